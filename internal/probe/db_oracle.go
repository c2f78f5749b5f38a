//go:build !nooracle

package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"

	goora "github.com/sijms/go-ora/v2"
	"github.com/sijms/go-ora/v2/configurations"
	"github.com/sijms/go-ora/v2/network"
)

// Oracle through go-ora, pure Go, no Instant Client. The service name comes from db.database
// or the target's path (host:1521/ORCLPDB1, Easy Connect style). TLS by default is none;
// require and verify connect over TCPS. The default query is SELECT 1 FROM DUAL. go-ora keeps
// the server's version to itself, so none is reported.
func init() {
	registerDB(&dbKind{
		name:        "oracle",
		defaultPort: 1521,
		run:         runOracle,
		authErr: func(err error) bool {
			var oe *network.OracleError
			// ORA-01017 invalid username/password, ORA-01005 null password, ORA-28000
			// account locked, ORA-28001 password expired, ORA-01045 no CREATE SESSION.
			return errors.As(err, &oe) && slices.Contains([]int{1017, 1005, 28000, 28001, 1045}, oe.ErrCode)
		},
		serverErr: func(err error) bool {
			var oe *network.OracleError
			return errors.As(err, &oe)
		},
	})
}

// oracleConfig builds go-ora's configuration from a URL that names the server, the service and
// the params but holds no credential, then sets the credentials on the structure.
func oracleConfig(s *dbSession) (*configurations.ConnectionConfig, error) {
	if s.database == "" {
		return nil, errors.New("oracle needs a service name: db.database, or host:port/SERVICE as the target")
	}
	if s.user == "" || s.password == "" {
		return nil, errors.New("oracle needs a username and password: an auth module")
	}
	q := url.Values{}
	for k, v := range s.m.Params {
		q.Set(k, v)
	}
	u := url.URL{Scheme: "oracle", Host: net.JoinHostPort(s.host, strconv.Itoa(s.port)), Path: "/" + s.database, RawQuery: q.Encode()}
	cfg, err := goora.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("oracle configuration: %w", err)
	}
	// Parsed without a password the configuration asks for OS authentication; this is a
	// password login.
	cfg.UserID, cfg.Password, cfg.AuthType = s.user, s.password, configurations.Normal
	cfg.Timeout = s.remaining()
	cfg.RegisterDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
		return s.dialContext(ctx, network, addr, nil)
	})
	switch mode := s.tlsMode(dbTLSDisable); mode {
	case dbTLSDisable:
		cfg.SSL, cfg.Protocol, cfg.TLSConfig = false, "tcp", nil
	default:
		tc, err := s.tlsConfig(mode)
		if err != nil {
			return nil, err
		}
		cfg.SSL, cfg.Protocol, cfg.TLSConfig = true, "tcps", tc
	}
	return cfg, nil
}

func runOracle(ctx context.Context, s *dbSession) error {
	cfg, err := oracleConfig(s)
	if err != nil {
		return dbConfigErr(err)
	}
	conn, err := goora.NewConnection("", cfg)
	if err != nil {
		return fmt.Errorf("oracle configuration: %w", err)
	}
	if err := conn.OpenWithContext(ctx); err != nil {
		_ = conn.Close()
		return err
	}
	defer conn.Close()
	s.authed()
	q := s.query
	if q == "" {
		q = "SELECT 1 FROM DUAL"
	}
	return dbQueryDriverConn(ctx, conn, q)
}
