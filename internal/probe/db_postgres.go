package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// PostgreSQL through pgx's pgconn: one connection, the simple query protocol, no statement
// cache. TLS by default is libpq's "prefer": TLS without a certificate check, and a second
// connection without TLS when the server refuses it.
func init() {
	registerDB(&dbKind{
		name:        "postgres",
		defaultPort: 5432,
		defaultUser: "postgres",
		run:         runPostgres,
		authErr: func(err error) bool {
			var pe *pgconn.PgError
			// 28P01 invalid_password, 28000 invalid_authorization_specification (no
			// pg_hba.conf line, role may not log in).
			return errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000")
		},
		serverErr: func(err error) bool {
			var pe *pgconn.PgError
			return errors.As(err, &pe)
		},
		tlsErr: func(err error) bool {
			// A failed handshake is recognised by its crypto/tls error, which pgconn wraps.
			return strings.Contains(err.Error(), "server refused TLS connection")
		},
	})
}

// postgresConfig builds pgconn's configuration field by field; the connection string it starts
// from names only the host, never a credential, and pins sslmode so that the PG* environment
// cannot switch TLS on or off behind the module's back.
func postgresConfig(s *dbSession) (*pgconn.Config, error) {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(s.host, strconv.Itoa(s.port)), RawQuery: "sslmode=disable"}
	cfg, err := pgconn.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("postgres configuration: %w", err)
	}
	cfg.Host, cfg.Port = s.host, uint16(s.port)
	cfg.User, cfg.Password, cfg.Database = s.user, s.password, s.database
	cfg.ConnectTimeout = 0 // the context's deadline bounds it
	cfg.ValidateConnect, cfg.AfterConnect, cfg.AfterNetConnect = nil, nil, nil
	cfg.KerberosSrvName, cfg.KerberosSpn = "", ""
	cfg.SSLNegotiation, cfg.ChannelBinding, cfg.RequireAuth = "", "", ""
	cfg.RuntimeParams = map[string]string{"application_name": "serversage-probe"}
	for k, v := range s.m.Params {
		cfg.RuntimeParams[k] = v
	}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return s.dialContext(ctx, network, addr, nil)
	}
	// The dialer resolves (or maps the target to the preferred family's address): pgconn
	// must not expand the name into addresses itself.
	cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) { return []string{host}, nil }
	cfg.Fallbacks = nil
	cfg.TLSConfig = nil
	switch mode := s.tlsMode("prefer"); mode {
	case dbTLSDisable:
	case "prefer":
		tc, err := s.tlsConfig(dbTLSRequire)
		if err != nil {
			return nil, err
		}
		cfg.TLSConfig = tc
		cfg.Fallbacks = []*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port}}
	default:
		tc, err := s.tlsConfig(mode)
		if err != nil {
			return nil, err
		}
		cfg.TLSConfig = tc
	}
	return cfg, nil
}

func runPostgres(ctx context.Context, s *dbSession) error {
	cfg, err := postgresConfig(s)
	if err != nil {
		return dbConfigErr(err)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	s.authed()
	if v := conn.ParameterStatus("server_version"); v != "" {
		s.setVersion(dbVersionLabel(v))
	}
	q := s.query
	if q == "" {
		q = "SELECT 1"
	}
	mrr := conn.Exec(ctx, q)
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		for n := 0; n < dbMaxRows && rr.NextRow(); n++ {
		}
		if _, err := rr.Close(); err != nil {
			_ = mrr.Close()
			return err
		}
	}
	return mrr.Close()
}
