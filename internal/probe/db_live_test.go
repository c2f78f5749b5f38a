package probe

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/serversage/sage/internal/testenv"
)

// Live tests against the test services: PostgreSQL, MariaDB and Redis on loopback.

func dbNeed(t testing.TB, addr, what string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		testenv.Missing(t, what+" at "+addr, "start the test services")
		return
	}
	c.Close()
}

func dbPhases(t testing.TB, r *Result, phases ...string) {
	t.Helper()
	sum := 0.0
	for _, p := range phases {
		v, ok := r.Get("probe_db_duration_seconds", "phase", p)
		if !ok || v < 0 {
			t.Errorf("phase %s: %v (set %v)", p, v, ok)
		}
		sum += v
	}
	if sum > r.Duration.Seconds() {
		t.Errorf("phases add up to %vs, more than the probe's %v", sum, r.Duration)
	}
}

func dbVersion(r *Result) string {
	for _, s := range r.Samples {
		if s.Name == "probe_db_server_version_info" {
			return s.Labels[1]
		}
	}
	return ""
}

func TestPostgresLive(t *testing.T) {
	dbNeed(t, "127.0.0.1:5432", "PostgreSQL")
	for _, tc := range []struct {
		name    string
		target  string
		db      DBModule
		ok      bool
		reason  Reason
		withTLS bool
	}{
		{name: "default prefers TLS", target: "127.0.0.1", db: DBModule{Database: "test"}, ok: true, withTLS: true},
		{name: "disable", target: "127.0.0.1:5432", db: DBModule{Database: "test", TLS: "disable"}, ok: true},
		{name: "require", target: "127.0.0.1:5432/test", db: DBModule{TLS: "require"}, ok: true, withTLS: true},
		{name: "verify against a self-signed certificate", target: "127.0.0.1:5432", db: DBModule{TLS: "verify"}, reason: ReasonTLS},
		{name: "query", target: "127.0.0.1", db: DBModule{Database: "test", Query: "SELECT g FROM generate_series(1, 5000) g; SELECT 2"}, ok: true, withTLS: true},
		{name: "bad query", target: "127.0.0.1", db: DBModule{Database: "test", Query: "SELECT * FROM no_such_table_sage"}, reason: ReasonStatus},
		{name: "no such database", target: "127.0.0.1", db: DBModule{Database: "no_such_db_sage"}, reason: ReasonStatus},
		{name: "application params", target: "127.0.0.1", db: DBModule{TLS: "disable", Params: map[string]string{"search_path": "public"}}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dbRun(t, "postgres", tc.target, tc.db, 5*time.Second)
			dbWant(t, r, tc.ok, tc.reason)
			if !tc.ok {
				return
			}
			dbPhases(t, r, "connect", "auth", "query")
			if v := dbVersion(r); !strings.HasPrefix(v, "1") {
				t.Errorf("server version %q", v)
			}
			_, tlsSet := r.Get("probe_tls_version_info", "version", "TLS 1.3")
			if tlsSet != tc.withTLS {
				t.Errorf("TLS 1.3 recorded: %v, want %v (%+v)", tlsSet, tc.withTLS, r.Samples)
			}
			if _, ok := r.Get("probe_ssl_earliest_cert_expiry"); ok != tc.withTLS {
				t.Errorf("certificate expiry recorded: %v, want %v", ok, tc.withTLS)
			}
		})
	}
}

// TestMySQLLive runs against MariaDB, with a user the test creates to check a refused password.
func TestMySQLLive(t *testing.T) {
	dbNeed(t, "127.0.0.1:3306", "MariaDB")
	admin := mysql.NewConfig()
	admin.Net, admin.Addr, admin.User = "tcp", "127.0.0.1:3306", "root"
	c, err := mysql.NewConnector(admin)
	if err != nil {
		t.Fatal(err)
	}
	adb := sql.OpenDB(c)
	t.Cleanup(func() { adb.Close() })
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	user, pw := "sage_probe_"+hex.EncodeToString(b), "pw-"+hex.EncodeToString(b)
	if _, err := adb.Exec("CREATE USER '" + user + "'@'127.0.0.1' IDENTIFIED BY '" + pw + "'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = adb.Exec("DROP USER '" + user + "'@'127.0.0.1'") })
	auth := func(p string) *AuthModule { return &AuthModule{Username: user, Password: Secret{Inline: p}} }

	for _, tc := range []struct {
		name   string
		db     DBModule
		ok     bool
		reason Reason
	}{
		{name: "root", db: DBModule{Database: "test"}, ok: true},
		{name: "user", db: DBModule{Auth: auth(pw)}, ok: true},
		{name: "wrong password", db: DBModule{Auth: auth("wrong-" + pw)}, reason: ReasonAuth},
		{name: "database not granted", db: DBModule{Auth: auth(pw), Database: "test"}, reason: ReasonAuth},
		{name: "no such database", db: DBModule{Database: "no_such_db_sage"}, reason: ReasonStatus},
		{name: "bad query", db: DBModule{Query: "SELECT * FROM no_such_table"}, reason: ReasonStatus},
		{name: "query", db: DBModule{Database: "test", Query: "SELECT seq FROM seq_1_to_5000"}, ok: true},
		{name: "tls required, server has none", db: DBModule{TLS: "require"}, reason: ReasonTLS},
		{name: "params", db: DBModule{Params: map[string]string{"sql_mode": "'ANSI'"}}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dbRun(t, "mysql", "127.0.0.1:3306", tc.db, 5*time.Second)
			dbWant(t, r, tc.ok, tc.reason)
			if strings.Contains(r.Detail, pw) {
				t.Errorf("detail quotes the password: %s", r.Detail)
			}
			// The greeting carries the version, even when the login fails.
			if v := dbVersion(r); !strings.Contains(v, "MariaDB") || strings.HasPrefix(v, "5.5.5-") {
				t.Errorf("server version %q", v)
			}
			if tc.ok {
				dbPhases(t, r, "connect", "auth", "query")
			}
		})
	}
}

func TestRedisLive(t *testing.T) {
	dbNeed(t, "127.0.0.1:6379", "Redis")
	for _, tc := range []struct {
		name, target string
		db           DBModule
		ok           bool
		reason       Reason
	}{
		{name: "ping", target: "127.0.0.1", ok: true},
		{name: "ipv6", target: "[::1]:6379", ok: true},
		{name: "command line", target: "127.0.0.1:6379", db: DBModule{Query: `ECHO "hello world"`}, ok: true},
		{name: "nil answer", target: "127.0.0.1:6379", db: DBModule{Query: `GET sage:probe:no-such-key`, Database: "1"}, ok: true},
		{name: "unknown command", target: "127.0.0.1:6379", db: DBModule{Query: `NOSUCHCOMMAND x`}, reason: ReasonStatus},
		{name: "no such database", target: "127.0.0.1:6379", db: DBModule{Database: "100000"}, reason: ReasonStatus},
		// Redis takes the ClientHello for the start of a command and waits for its end.
		{name: "tls required, server has none", target: "127.0.0.1:6379", db: DBModule{TLS: "require"}, reason: ReasonTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dbRun(t, "redis", tc.target, tc.db, time.Second)
			dbWant(t, r, tc.ok, tc.reason)
			if tc.ok {
				dbPhases(t, r, "connect", "auth", "query")
				if v := dbVersion(r); v == "" {
					t.Errorf("no server version")
				}
			}
		})
	}

	// A Redis of the test's own with a password, so as not to touch the shared one.
	bin := testenv.LookPath(t, "redis-server", "redis-server")
	addr := testenv.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--requirepass", "sage-test-pw",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	out := &testenv.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not start: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Setenv("SAGE_DB_TEST_REDIS_PW", "sage-test-pw")
	for _, tc := range []struct {
		name   string
		auth   *AuthModule
		ok     bool
		reason Reason
	}{
		{name: "no password", reason: ReasonAuth},
		{name: "wrong password", auth: &AuthModule{Password: Secret{Inline: "not-the-pw"}}, reason: ReasonAuth},
		{name: "password from env", auth: &AuthModule{Password: Secret{Env: "SAGE_DB_TEST_REDIS_PW"}}, ok: true},
		{name: "user and password", auth: &AuthModule{Username: "default", Password: Secret{Inline: "sage-test-pw"}}, ok: true},
	} {
		t.Run("requirepass/"+tc.name, func(t *testing.T) {
			r := dbRun(t, "redis", addr, DBModule{Auth: tc.auth}, 5*time.Second)
			dbWant(t, r, tc.ok, tc.reason)
			if strings.Contains(r.Detail, "not-the-pw") || strings.Contains(r.Detail, "sage-test-pw") {
				t.Errorf("detail quotes a password: %s", r.Detail)
			}
		})
	}
}

// BenchmarkDBProbe measures one whole probe (connect, log in, query, close) per kind on
// loopback: go test -run X -bench DBProbe -benchtime 200x ./internal/probe
func BenchmarkDBProbe(b *testing.B) {
	for _, k := range []struct{ kind, target string }{
		{"postgres", "127.0.0.1:5432"},
		{"mysql", "127.0.0.1:3306"},
		{"redis", "127.0.0.1:6379"},
	} {
		for _, tlsMode := range []string{"disable", "require"} {
			if k.kind != "postgres" && tlsMode == "require" {
				continue
			}
			b.Run(k.kind+"/"+tlsMode, func(b *testing.B) {
				dbNeed(b, k.target, k.kind)
				m := &Module{Prober: k.kind, DB: DBModule{TLS: tlsMode}}
				for b.Loop() {
					r := Run(context.Background(), k.target, m, 5*time.Second, nil)
					if !r.Success {
						b.Fatalf("%s: %s %s", k.kind, r.Reason, r.Detail)
					}
				}
			})
		}
	}
}
