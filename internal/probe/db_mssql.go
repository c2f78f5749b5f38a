//go:build !nomssql

package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/msdsn"
)

// Microsoft SQL Server through go-mssqldb's connector with SQL Server authentication (no Azure
// AD, no Kerberos). TLS by default is the driver's: only the login packet is encrypted and the
// certificate is not checked. The version is read from the server's pre-login answer, which
// comes before the login.
func init() {
	registerDB(&dbKind{
		name:        "mssql",
		defaultPort: 1433,
		defaultUser: "sa",
		run:         runMSSQL,
		authErr: func(err error) bool {
			var me mssql.Error
			// 18456 login failed, 18452 untrusted domain login, 18486 account locked,
			// 18487/18488 password expired or must change.
			return errors.As(err, &me) && slices.Contains([]int32{18456, 18452, 18486, 18487, 18488}, me.Number)
		},
		serverErr: func(err error) bool {
			var me mssql.Error
			return errors.As(err, &me)
		},
		tlsErr: func(err error) bool {
			msg := err.Error()
			return strings.Contains(msg, "server does not support encryption") || strings.Contains(msg, "TLS Handshake failed")
		},
	})
}

// mssqlConfig builds the driver's configuration from a URL that holds no credential (so that
// params reach the driver's own parser), then sets the credentials and TLS on the structure.
func mssqlConfig(s *dbSession) (msdsn.Config, error) {
	q := url.Values{}
	for k, v := range s.m.Params {
		q.Set(k, v)
	}
	q.Set("app name", "serversage-probe")
	if s.database != "" {
		q.Set("database", s.database)
	}
	u := url.URL{Scheme: "sqlserver", Host: net.JoinHostPort(s.host, strconv.Itoa(s.port)), RawQuery: q.Encode()}
	p, err := msdsn.Parse(u.String())
	if err != nil {
		return p, fmt.Errorf("mssql configuration: %w", err)
	}
	p.User, p.Password = s.user, s.password
	p.DialTimeout = -1 // the context's deadline bounds it
	p.ConnTimeout = 0
	switch mode := s.tlsMode(dbTLSDefault); mode {
	case dbTLSDefault:
		// The driver's default: TLS for the login packet only, certificate not checked.
		if p.Encryption != msdsn.EncryptionDisabled {
			tc, err := s.tlsConfig(dbTLSRequire)
			if err != nil {
				return p, err
			}
			p.TLSConfig = tc
		}
	case dbTLSDisable:
		p.Encryption, p.TLSConfig = msdsn.EncryptionDisabled, nil
	default:
		tc, err := s.tlsConfig(mode)
		if err != nil {
			return p, err
		}
		p.Encryption, p.TLSConfig, p.TrustServerCertificate = msdsn.EncryptionRequired, tc, mode != dbTLSVerify
	}
	return p, nil
}

// mssqlDialer hands go-mssqldb the probe's dialer. Being a HostDialer, it gets the host name
// rather than addresses the driver resolved itself without a context.
type mssqlDialer struct{ s *dbSession }

func (d mssqlDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.s.dialContext(ctx, network, addr, nil)
}

func (d mssqlDialer) HostName() string { return d.s.host }

func runMSSQL(ctx context.Context, s *dbSession) error {
	p, err := mssqlConfig(s)
	if err != nil {
		return dbConfigErr(err)
	}
	s.sniffFirst = true
	connector := mssql.NewConnectorConfig(p)
	connector.Dialer = mssqlDialer{s}
	return s.loginAndQuery(ctx, connector, mssqlPreloginVersion)
}

// mssqlPreloginVersion reads the server's version from its pre-login answer: a TDS packet (an
// 8-byte header, type 4) whose data is a table of options (token, 2-byte offset, 2-byte length,
// ended by 0xFF), option 0 being the version: major, minor, 2-byte build, 2-byte sub-build.
func mssqlPreloginVersion(b []byte) string {
	if len(b) < 8 || b[0] != 0x04 {
		return ""
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < 8 {
		return ""
	}
	data := b[8:min(n, len(b))]
	for i := 0; i+5 <= len(data) && data[i] != 0xFF; i += 5 {
		if data[i] != 0x00 {
			continue
		}
		off, l := int(binary.BigEndian.Uint16(data[i+1:])), int(binary.BigEndian.Uint16(data[i+3:]))
		if l < 4 || off+4 > len(data) {
			return ""
		}
		v := data[off : off+4]
		return fmt.Sprintf("%d.%d.%d", v[0], v[1], binary.BigEndian.Uint16(v[2:4]))
	}
	return ""
}
