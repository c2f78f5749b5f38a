package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// MySQL and MariaDB through go-sql-driver/mysql's connector, one connection, no database/sql
// pool. TLS by default is the driver's: none. The server's version is read from its greeting,
// which costs no round trip and is there even when the login fails.
func init() {
	registerDB(&dbKind{
		name:        "mysql",
		defaultPort: 3306,
		defaultUser: "root",
		run:         runMySQL,
		authErr: func(err error) bool {
			var me *mysql.MySQLError
			// 1044 no access to the database, 1045 access denied, 1698 access denied (socket
			// plugins), 1862 password expired, 3118 account locked.
			return errors.As(err, &me) && slices.Contains([]uint16{1044, 1045, 1698, 1862, 3118}, me.Number)
		},
		serverErr: func(err error) bool {
			var me *mysql.MySQLError
			return errors.As(err, &me)
		},
		tlsErr: func(err error) bool { return errors.Is(err, mysql.ErrNoTLS) },
	})
}

// mysqlConfig builds the driver's configuration. Params go through the driver's own DSN parser
// (so its options and system variables work), from a DSN that holds no credential; the
// credentials, address and TLS are set on the structure afterwards.
func mysqlConfig(s *dbSession) (*mysql.Config, error) {
	cfg := mysql.NewConfig()
	if len(s.m.Params) > 0 {
		q := url.Values{}
		for k, v := range s.m.Params {
			q.Set(k, v)
		}
		var err error
		if cfg, err = mysql.ParseDSN("tcp(" + s.driverAddr + ")/?" + q.Encode()); err != nil {
			return nil, fmt.Errorf("mysql params: %w", err)
		}
	}
	cfg.Net, cfg.Addr = "tcp", s.driverAddr
	cfg.User, cfg.Passwd, cfg.DBName = s.user, s.password, s.database
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 0, 0, 0 // the probe's deadline bounds them
	cfg.ConnectionAttributes = "program_name:serversage-probe"
	cfg.Logger = mysqlLogger{s.logger}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return s.dialContext(ctx, network, addr, nil)
	}
	cfg.TLSConfig, cfg.TLS, cfg.AllowFallbackToPlaintext = "", nil, false
	switch mode := s.tlsMode(dbTLSDisable); mode {
	case dbTLSDisable:
	default:
		tc, err := s.tlsConfig(mode)
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

func runMySQL(ctx context.Context, s *dbSession) error {
	cfg, err := mysqlConfig(s)
	if err != nil {
		return dbConfigErr(err)
	}
	s.sniffFirst = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("mysql configuration: %w", err)
	}
	return s.loginAndQuery(ctx, connector, mysqlGreetingVersion)
}

// mysqlGreetingVersion reads the server version from the first packet a MySQL server sends (the
// initial handshake, protocol 10): a 3-byte length, a sequence number, the protocol version and
// the NUL-terminated version string. MariaDB prefixes "5.5.5-" for old replication clients.
func mysqlGreetingVersion(b []byte) string {
	if len(b) < 6 || b[4] != 10 {
		return ""
	}
	n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	payload := b[4:]
	if n < len(payload) {
		payload = payload[:n]
	}
	if len(payload) < 2 {
		return ""
	}
	end := bytes.IndexByte(payload[1:], 0)
	if end <= 0 {
		return ""
	}
	v := string(payload[1 : 1+end])
	if rest, ok := strings.CutPrefix(v, "5.5.5-"); ok && strings.Contains(rest, "MariaDB") {
		v = rest
	}
	return dbVersionLabel(v)
}

// mysqlLogger sends the driver's complaints (it logs broken connections itself) to the probe's
// logger instead of the process's standard error.
type mysqlLogger struct{ l *slog.Logger }

func (m mysqlLogger) Print(v ...any) { m.l.Debug("mysql driver", "msg", fmt.Sprint(v...)) }
