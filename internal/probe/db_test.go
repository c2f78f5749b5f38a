package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/pem"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serversage/sage/internal/testenv"
)

// dbRun runs one database probe the way the scheduler and /probe do.
func dbRun(t testing.TB, kind, target string, db DBModule, timeout time.Duration) *Result {
	t.Helper()
	m := &Module{Prober: kind, DB: db}
	return Run(context.Background(), target, m, timeout, nil)
}

func dbWant(t testing.TB, r *Result, ok bool, reason Reason) {
	t.Helper()
	if r.Success != ok || r.Reason != reason {
		t.Fatalf("success=%v reason=%q (%s), want success=%v reason=%q", r.Success, r.Reason, r.Detail, ok, reason)
	}
}

// dbFakeServer listens on loopback and hands every connection to handle; it returns the
// address and a channel that receives, for each connection, when the peer closed it.
func dbFakeServer(t testing.TB, handle func(net.Conn)) (string, <-chan time.Time) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan time.Time, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
				// Wait for the client to close its end: a probe must not leave it open.
				buf := make([]byte, 512)
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					if _, err := c.Read(buf); err != nil {
						select {
						case closed <- time.Now():
						default:
						}
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), closed
}

// dbRefusedAddr is a loopback port nothing listens on.
func dbRefusedAddr(t testing.TB) string { return testenv.FreeAddr(t) }

func dbOracleModule() DBModule {
	return DBModule{Database: "FREEPDB1", Auth: &AuthModule{Username: "probe", Password: Secret{Inline: "secret-pw"}}}
}

// TestDBFaults runs every kind against the faults that need no real server: a refused port, a
// server that accepts and never speaks (the deadline must end the probe), one that closes at
// once, and a name that does not resolve. MS SQL Server, Oracle and MongoDB have no server in
// the test environment; this is what can be tested of them without one.
func TestDBFaults(t *testing.T) {
	silent := func(c net.Conn) {}
	closing := func(c net.Conn) { c.Close() }
	kinds := []struct {
		kind string
		db   DBModule
	}{
		{"postgres", DBModule{}},
		{"mysql", DBModule{}},
		{"mssql", DBModule{}},
		{"oracle", dbOracleModule()},
		{"mongodb", DBModule{}},
		{"redis", DBModule{}},
	}
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			t.Parallel()
			t.Run("refused", func(t *testing.T) {
				r := dbRun(t, k.kind, dbRefusedAddr(t), k.db, 3*time.Second)
				dbWant(t, r, false, ReasonConnect)
				if v, ok := r.Get("probe_db_duration_seconds", "phase", "connect"); !ok || v >= 3 {
					t.Errorf("connect phase %v (set %v): a refused port answers at once", v, ok)
				}
				if _, ok := r.Get("probe_db_duration_seconds", "phase", "auth"); ok {
					t.Errorf("auth phase recorded though the connection failed")
				}
			})
			t.Run("silent", func(t *testing.T) {
				addr, closed := dbFakeServer(t, silent)
				const timeout = 400 * time.Millisecond
				start := time.Now()
				r := dbRun(t, k.kind, addr, k.db, timeout)
				took := time.Since(start)
				dbWant(t, r, false, ReasonTimeout)
				// The deadline ends the probe: a generous bound, since it is about hanging,
				// not speed.
				if took > timeout+2*time.Second {
					t.Errorf("probe took %v with a %v deadline", took, timeout)
				}
				if _, ok := r.Get("probe_db_duration_seconds", "phase", "auth"); !ok {
					t.Errorf("auth phase not recorded: the connection was made, the login hung")
				}
				select {
				case <-closed:
				case <-time.After(5 * time.Second):
					t.Errorf("the probe left its connection open")
				}
			})
			t.Run("closing", func(t *testing.T) {
				addr, _ := dbFakeServer(t, closing)
				r := dbRun(t, k.kind, addr, k.db, 3*time.Second)
				dbWant(t, r, false, ReasonProtocol)
			})
			// Go refuses .onion names and malformed ones itself, without asking a DNS server.
			for _, name := range []string{"sage-db-test.onion", "sage..invalid"} {
				t.Run("unresolvable "+name, func(t *testing.T) {
					r := dbRun(t, k.kind, name, k.db, 3*time.Second)
					dbWant(t, r, false, ReasonResolve)
				})
			}
			t.Run("credentials in target", func(t *testing.T) {
				r := dbRun(t, k.kind, "probe:secret-pw@127.0.0.1:1", k.db, time.Second)
				dbWant(t, r, false, ReasonConfig)
				if strings.Contains(r.Detail, "secret-pw") {
					t.Errorf("detail quotes the password: %s", r.Detail)
				}
			})
		})
	}
}

// TestDBPreferredFamily: with preferred_ip_protocol the name is resolved first (phase
// "resolve"), and the dialer uses that address.
func TestDBPreferredFamily(t *testing.T) {
	addr, _ := dbFakeServer(t, func(c net.Conn) { c.Close() })
	_, port, _ := net.SplitHostPort(addr)
	no := false
	r := dbRun(t, "redis", net.JoinHostPort("localhost", port), DBModule{IPProtocol: IPProtocol{Preferred: "ip4", Fallback: &no}}, 3*time.Second)
	dbWant(t, r, false, ReasonProtocol) // reached the server that closes: the address was right
	if _, ok := r.Get("probe_db_duration_seconds", "phase", "resolve"); !ok {
		t.Errorf("no resolve phase")
	}
	if v, _ := r.Get("probe_ip_protocol"); v != 4 {
		t.Errorf("probe_ip_protocol = %v, want 4", v)
	}
}

// TestMSSQLPrelogin: a server that answers the pre-login with its version and then hangs up
// still tells the probe its version.
func TestMSSQLPrelogin(t *testing.T) {
	addr, _ := dbFakeServer(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err != nil { // the client's pre-login
			return
		}
		_, _ = c.Write(mssqlPreloginPacket(16, 0, 4135))
		c.Close()
	})
	r := dbRun(t, "mssql", addr, DBModule{TLS: "disable"}, 3*time.Second)
	dbWant(t, r, false, ReasonProtocol)
	if _, ok := r.Get("probe_db_server_version_info", "version", "16.0.4135"); !ok {
		t.Errorf("version not recorded: %+v", r.Samples)
	}
}

// mssqlPreloginPacket builds a pre-login answer with a version and "encryption not supported".
func mssqlPreloginPacket(major, minor byte, build uint16) []byte {
	// Options: VERSION (0) at offset 11, length 6; ENCRYPTION (1) at 17, length 1; end.
	opts := []byte{0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xFF}
	data := append(opts, major, minor, byte(build>>8), byte(build), 0, 0, 0x02)
	hdr := make([]byte, 8)
	hdr[0], hdr[1] = 0x04, 0x01
	binary.BigEndian.PutUint16(hdr[2:], uint16(8+len(data)))
	return append(hdr, data...)
}

// TestPostgresAuthFake: a server that refuses the password with SQLSTATE 28P01, as PostgreSQL
// does (the test PostgreSQL trusts every local login, so cannot).
func TestPostgresAuthFake(t *testing.T) {
	addr, _ := dbFakeServer(t, func(c net.Conn) {
		hdr := make([]byte, 8)
		for {
			if _, err := readFull(c, hdr[:4]); err != nil {
				return
			}
			n := int(binary.BigEndian.Uint32(hdr[:4]))
			body := make([]byte, n-4)
			if _, err := readFull(c, body); err != nil {
				return
			}
			if n == 8 && binary.BigEndian.Uint32(body) == 80877103 { // SSLRequest
				_, _ = c.Write([]byte{'N'})
				continue
			}
			break
		}
		msg := "SFATAL\x00VFATAL\x00C28P01\x00Mpassword authentication failed for user \"probe\"\x00\x00"
		pkt := []byte{'E', 0, 0, 0, 0}
		binary.BigEndian.PutUint32(pkt[1:], uint32(4+len(msg)))
		_, _ = c.Write(append(pkt, msg...))
	})
	r := dbRun(t, "postgres", addr, DBModule{Auth: &AuthModule{Username: "probe", Password: Secret{Inline: "wrong-pw"}}}, 3*time.Second)
	dbWant(t, r, false, ReasonAuth)
	if strings.Contains(r.Detail, "wrong-pw") {
		t.Errorf("detail quotes the password: %s", r.Detail)
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestParseDBTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want dbTarget
		err  bool
	}{
		{in: "db1", want: dbTarget{host: "db1", port: 5432}},
		{in: "db1:6543", want: dbTarget{host: "db1", port: 6543}},
		{in: "db1:6543/sales", want: dbTarget{host: "db1", port: 6543, database: "sales"}},
		{in: "db1/ORCLPDB1", want: dbTarget{host: "db1", port: 5432, database: "ORCLPDB1"}},
		{in: "[::1]:5433", want: dbTarget{host: "::1", port: 5433}},
		{in: "[::1]", want: dbTarget{host: "::1", port: 5432}},
		{in: "::1", want: dbTarget{host: "::1", port: 5432}},
		{in: "10.0.0.1", want: dbTarget{host: "10.0.0.1", port: 5432}},
		{in: "postgres://db1:5433/app", want: dbTarget{host: "db1", port: 5433, database: "app"}},
		{in: "mongodb://[::1]", want: dbTarget{host: "::1", port: 5432}},
		{in: "postgres://u:p@db1/app", err: true},
		{in: "u:p@db1", err: true},
		{in: "db1:0", err: true},
		{in: "db1:70000", err: true},
		{in: "db1:x", err: true},
		{in: "", err: true},
		{in: ":5432", err: true},
		{in: "a b:1", err: true},
	} {
		got, err := parseDBTarget(tc.in, 5432)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseDBTarget(f *testing.F) {
	for _, s := range []string{"db1", "db1:5432/x", "[::1]:1", "::1", "pg://h:1/d", "u@h", "[", "h:", "://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseDBTarget(s, 1)
		if err != nil {
			return
		}
		if got.host == "" || got.port < 1 || got.port > 65535 {
			t.Fatalf("%q: accepted %+v", s, got)
		}
		if strings.Contains(s, "@") {
			t.Fatalf("%q: accepted a target with credentials", s)
		}
	})
}

func TestDBValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prober string
		m      DBModule
		fields []string
	}{
		{name: "zero", prober: "postgres"},
		{name: "good", prober: "postgres", m: DBModule{TLS: "verify", TLSConfig: TLSConfig{CAFile: "/ca.pem"}, Query: "SELECT 2"}},
		{name: "bad tls", prober: "mysql", m: DBModule{TLS: "yes"}, fields: []string{"db.tls"}},
		{name: "tls_config without tls", prober: "mysql", m: DBModule{TLSConfig: TLSConfig{CAFile: "/ca.pem"}}, fields: []string{"db.tls_config"}},
		{name: "verify but skip", prober: "mysql", m: DBModule{TLS: "verify", TLSConfig: TLSConfig{InsecureSkipVerify: true}}, fields: []string{"db.tls_config.insecure_skip_verify"}},
		{name: "min version", prober: "mysql", m: DBModule{TLS: "require", TLSConfig: TLSConfig{MinVersion: "SSL3"}}, fields: []string{"db.tls_config.min_version"}},
		{name: "cert without key", prober: "mysql", m: DBModule{TLS: "require", TLSConfig: TLSConfig{CertFile: "c.pem"}}, fields: []string{"db.tls_config"}},
		{name: "password param", prober: "postgres", m: DBModule{Params: map[string]string{"Password": "x"}}, fields: []string{"db.params.Password"}},
		{name: "nul query", prober: "postgres", m: DBModule{Query: "SELECT\x001"}, fields: []string{"db.query"}},
		{name: "ip family", prober: "postgres", m: DBModule{IPProtocol: IPProtocol{Preferred: "ip5"}}, fields: []string{"db.preferred_ip_protocol"}},
		{name: "redis query", prober: "redis", m: DBModule{Query: `GET "unclosed`}, fields: []string{"db.query"}},
		{name: "redis database", prober: "redis", m: DBModule{Database: "two"}, fields: []string{"db.database"}},
		{name: "redis params", prober: "redis", m: DBModule{Params: map[string]string{"a": "b"}}, fields: []string{"db.params"}},
		{name: "mongo query", prober: "mongodb", m: DBModule{Query: `ping`}, fields: []string{"db.query"}},
		{name: "mongo query good", prober: "mongodb", m: DBModule{Query: `{"hello": 1}`}},
		{name: "redis query is not SQL", prober: "postgres", m: DBModule{Query: `GET "unclosed`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := append(tc.m.validate("db"), tc.m.ValidateFor(tc.prober, "db")...)
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
				t.Errorf("fields %v, want %v (%v)", got, tc.fields, errs)
			}
		})
	}
}

// TestDBConfigErrors: a module that cannot work fails as "config", before any connection.
func TestDBConfigErrors(t *testing.T) {
	addr, _ := dbFakeServer(t, func(c net.Conn) {})
	for _, tc := range []struct {
		name, kind string
		db         DBModule
	}{
		{"missing secret env", "postgres", DBModule{Auth: &AuthModule{Username: "u", Password: Secret{Env: "SAGE_DB_TEST_UNSET_VARIABLE"}}}},
		{"missing secret file", "mysql", DBModule{Auth: &AuthModule{Username: "u", Password: Secret{File: "/nonexistent/pw"}}}},
		{"oracle without service", "oracle", DBModule{Auth: &AuthModule{Username: "u", Password: Secret{Inline: "p"}}}},
		{"oracle without password", "oracle", DBModule{Database: "XE"}},
		{"bad redis query", "redis", DBModule{Query: `"`}},
		{"bad mongo command", "mongodb", DBModule{Query: `[1]`}},
		{"bad ca file", "postgres", DBModule{TLS: "verify", TLSConfig: TLSConfig{CAFile: "/nonexistent/ca.pem"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dbRun(t, tc.kind, addr, tc.db, 2*time.Second)
			dbWant(t, r, false, ReasonConfig)
		})
	}
}

func TestParseRedisCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "PING", want: []string{"PING"}},
		{in: "  SET  k\tv ", want: []string{"SET", "k", "v"}},
		{in: `SET k "a b\"c\\d\n\x41"`, want: []string{"SET", "k", "a b\"c\\d\nA"}},
		{in: `ECHO 'it\'s' ""`, want: []string{"ECHO", "it's", ""}},
		{in: `ECHO 'a\nb'`, want: []string{"ECHO", `a\nb`}},
		{in: "", err: true},
		{in: "   ", err: true},
		{in: `GET "k`, err: true},
		{in: `GET "k"x`, err: true},
		{in: `GET k"x"`, err: true},
		{in: `GET "\x4"`, err: true},
	} {
		got, err := parseRedisCommand(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && strings.Join(got, "\x00") != strings.Join(tc.want, "\x00") {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// redisQuote writes an argument so that parseRedisCommand reads it back.
func redisQuote(a string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			b.WriteString("\\x")
			b.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(c)&0xf, 16))
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func FuzzParseRedisCommand(f *testing.F) {
	for _, s := range []string{"PING", `SET k "v w"`, `ECHO 'x\'y'`, `"\x41\n"`, `"`, `a"b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := parseRedisCommand(s)
		if err != nil {
			return
		}
		if len(args) == 0 {
			t.Fatalf("%q: no error and no arguments", s)
		}
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = redisQuote(a)
		}
		again, err := parseRedisCommand(strings.Join(quoted, " "))
		if err != nil || strings.Join(again, "\x00") != strings.Join(args, "\x00") {
			t.Fatalf("%q: %q does not survive quoting: %q, %v", s, args, again, err)
		}
	})
}

func TestMySQLGreetingVersion(t *testing.T) {
	greet := func(proto byte, v string) []byte {
		payload := append([]byte{proto}, v...)
		payload = append(payload, 0, 1, 2, 3)
		return append([]byte{byte(len(payload)), 0, 0, 0}, payload...)
	}
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{greet(10, "8.0.36"), "8.0.36"},
		{greet(10, "5.5.5-10.11.6-MariaDB-0+deb12u1"), "10.11.6-MariaDB-0+deb12u1"},
		{greet(10, "5.5.5-custom"), "5.5.5-custom"},
		{greet(0xff, "Host blocked"), ""},
		{greet(10, ""), ""},
		{[]byte{1, 0, 0}, ""},
		{nil, ""},
	} {
		if got := mysqlGreetingVersion(tc.in); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzMySQLGreetingVersion(f *testing.F) {
	f.Add([]byte("\x0a\x00\x00\x00\x0a8.0.1\x00abc"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v := mysqlGreetingVersion(b)
		if len(v) > 64 || strings.ContainsAny(v, "\x00\n") {
			t.Fatalf("label %q", v)
		}
	})
}

func TestMSSQLPreloginVersion(t *testing.T) {
	good := mssqlPreloginPacket(15, 0, 2000)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"good", good, "15.0.2000"},
		{"truncated", good[:15], ""},
		{"not a reply", append([]byte{0x12}, good[1:]...), ""},
		{"no version option", append(append([]byte{}, good[:8]...), 0xFF), ""},
		{"empty", nil, ""},
	} {
		if got := mssqlPreloginVersion(tc.in); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func FuzzMSSQLPreloginVersion(f *testing.F) {
	f.Add(mssqlPreloginPacket(16, 0, 1000))
	f.Add([]byte{4, 1, 0, 9, 0, 0, 1, 0, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) { _ = mssqlPreloginVersion(b) })
}

// TestDBDialerTLS covers the kinds whose TLS handshake the probe's dialer does (redis,
// mongodb): a server that is not TLS fails as "tls"; a TLS Redis (a small RESP responder behind
// Go's TLS, certificate from httptest) succeeds with verify and the CA given, and records the
// TLS facts.
func TestDBDialerTLS(t *testing.T) {
	for _, kind := range []string{"redis", "mongodb"} {
		for name, handle := range map[string]func(net.Conn){
			"closes":  func(c net.Conn) { c.Close() },
			"not TLS": func(c net.Conn) { _, _ = c.Write([]byte("-ERR unknown command\r\n")) },
		} {
			t.Run(kind+"/"+name, func(t *testing.T) {
				addr, _ := dbFakeServer(t, handle)
				r := dbRun(t, kind, addr, DBModule{TLS: "require"}, 3*time.Second)
				dbWant(t, r, false, ReasonTLS)
			})
		}
	}

	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS() // only for its certificate
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: srv.TLS.Certificates})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go dbServeRESP(c)
		}
	}()
	for _, tc := range []struct {
		name   string
		db     DBModule
		ok     bool
		reason Reason
	}{
		{name: "verify with the CA", db: DBModule{TLS: "verify", TLSConfig: TLSConfig{CAFile: ca}}, ok: true},
		{name: "verify without the CA", db: DBModule{TLS: "verify"}, reason: ReasonTLS},
		{name: "verify with the wrong name", db: DBModule{TLS: "verify", TLSConfig: TLSConfig{CAFile: ca, ServerName: "db.example.org"}}, reason: ReasonTLS},
		{name: "require", db: DBModule{TLS: "require"}, ok: true},
	} {
		t.Run("redis over TLS/"+tc.name, func(t *testing.T) {
			r := dbRun(t, "redis", ln.Addr().String(), tc.db, 3*time.Second)
			dbWant(t, r, tc.ok, tc.reason)
			if !tc.ok {
				return
			}
			if _, ok := r.Get("probe_tls_version_info", "version", "TLS 1.3"); !ok {
				t.Errorf("TLS version not recorded")
			}
			if v, _ := r.Get("probe_ssl_earliest_cert_expiry"); v != float64(srv.Certificate().NotAfter.Unix()) {
				t.Errorf("certificate expiry %v, want %v", v, srv.Certificate().NotAfter.Unix())
			}
			if dbVersion(r) != "9.9.9" {
				t.Errorf("version %q", dbVersion(r))
			}
		})
	}
}

// dbServeRESP answers RESP2 commands as an old Redis would: HELLO is unknown, PING and INFO
// answer.
func dbServeRESP(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	line := func() (string, error) {
		s, err := br.ReadString('\n')
		return strings.TrimRight(s, "\r\n"), err
	}
	for {
		h, err := line()
		if err != nil || !strings.HasPrefix(h, "*") {
			return
		}
		n, _ := strconv.Atoi(h[1:])
		var args []string
		for range n {
			if _, err := line(); err != nil { // $len
				return
			}
			a, err := line()
			if err != nil {
				return
			}
			args = append(args, a)
		}
		if len(args) == 0 {
			return
		}
		switch strings.ToUpper(args[0]) {
		case "PING":
			_, _ = c.Write([]byte("+PONG\r\n"))
		case "INFO":
			body := "# Server\r\nredis_version:9.9.9\r\n"
			_, _ = c.Write([]byte("$" + strconv.Itoa(len(body)) + "\r\n" + body + "\r\n"))
		default:
			_, _ = c.Write([]byte("-ERR unknown command '" + args[0] + "'\r\n"))
		}
	}
}
