package inventory

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// These check the pure helpers; everything that touches the database is tested through the
// exported API on both databases (inventory_test.go and the others).

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = valid, else a substring of the message
	}{
		{"10.0.0.1", ""},
		{"2001:db8::1", ""},
		{"::ffff:10.0.0.1", ""},
		{"db1", ""},
		{"db1.acme.example", ""},
		{"db1.acme.example.", ""},
		{"xn--bcher-kva.example", ""},
		{"a-b.c-d", ""},
		{strings.Repeat("a", 63) + ".example", ""},
		{"", "empty"},
		{"10.0.0.300", "not an IP"},
		{"1.2.3", "not an IP"},
		{"-db1", "not an IP"},
		{"db1-", "not an IP"},
		{"db..example", "not an IP"},
		{"db_1", "not an IP"},
		{"db 1", "not an IP"},
		{"bücher.example", "not an IP"},
		{strings.Repeat("a", 64) + ".example", "not an IP"},
		{strings.Repeat("a.", 127) + "ab", "not an IP"}, // 256 characters
		{"fe80::1%eth0", "zone"},
		{"http://x", "not an IP"},
		{".", "not an IP"},
	}
	for _, tc := range tests {
		got := checkAddress(tc.in)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("checkAddress(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCheckTarget(t *testing.T) {
	tests := []struct{ in, want string }{
		{"db1:5432", ""},
		{"10.0.0.1:1", ""},
		{"[2001:db8::1]:5432", ""},
		{"https://kc.acme.example/realms/master", ""},
		{"http://10.0.0.1:8080/manager/status", ""},
		{"db1", "host:port"},
		{"db1:", "not a port"},
		{"db1:65536", "not a port"},
		{"db1:http", "not a port"},
		{"2001:db8::1:5432", "host:port"},
		{":5432", "empty"},
		{"https://", "no host"},
		{"http://user@db1/", "credentials_ref"},
		{"http://db1:0/", "URL port"},
		{"http://db_1/", "URL host"},
	}
	for _, tc := range tests {
		got := checkTarget(tc.in)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("checkTarget(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCheckCredentialsRef(t *testing.T) {
	tests := []struct{ in, want string }{
		{"env:PG_PASSWORD", ""},
		{"env:_x1", ""},
		{"file:/etc/sage/secrets/pg", ""},
		{"env:", "environment variable"},
		{"env:1ABC", "environment variable"},
		{"file:", "absolute"},
		{"file:/etc/sage/", "clean"},
		{"file:/a//b", "clean"},
		{"password123", "never the secret"},
		{"postgres://u:pw@h/db", "never the secret"},
		{"ENV:X", "never the secret"},
	}
	for _, tc := range tests {
		got := checkCredentialsRef(tc.in)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("checkCredentialsRef(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSlugify(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Acme Corp", "acme-corp"},
		{"  ACME -- Corp. (India) ", "acme-corp-india"},
		{"Müller & Söhne", "m-ller-s-hne"},
		{"東京", ""},
		{"100% Uptime", "100-uptime"},
		{strings.Repeat("ab ", 40), strings.TrimSuffix(strings.Repeat("ab-", 17), "-")},
	}
	for _, tc := range tests {
		got := slugify(tc.in)
		if got != tc.want {
			t.Errorf("slugify(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got != "" && !slugRE.MatchString(got) {
			t.Errorf("slugify(%q) = %q, which is not a valid slug", tc.in, got)
		}
	}
}

func TestWhereBuilder(t *testing.T) {
	var w where
	w.add("a = ?", 1)
	w.add("b BETWEEN ? AND ?", 2, 3)
	p := w.page(Page{Limit: 10, Offset: 5})
	if got := w.sql() + p; got != " WHERE a = $1 AND b BETWEEN $2 AND $3 LIMIT $4 OFFSET $5" {
		t.Errorf("got %q", got)
	}
	if len(w.args) != 5 {
		t.Errorf("args %v", w.args)
	}
	var empty where
	if empty.sql()+empty.page(Page{}) != "" {
		t.Error("an empty filter is not empty SQL")
	}
}

func TestEscapeLike(t *testing.T) {
	if got := escapeLike(`50%_off!`); got != `50!%!_off!!` {
		t.Errorf("escapeLike = %q", got)
	}
}

// TestDBErrorMapping: a foreign-key violation met while deleting (a row added concurrently, past
// the explicit check) is reported as ErrInUse; while writing, as a plain error; a unique violation
// on a known index as the field.
func TestDBErrorMapping(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		storetest.MustExec(t, db,
			`INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at) VALUES ('c1', 'A', 'a', 'a', 0, 0)`,
			`INSERT INTO sites (id, client_id, name, name_fold, created_at, updated_at) VALUES ('s1', 'c1', 'S', 's', 0, 0)`)
		_, fkErr := db.ExecContext(ctx, "DELETE FROM clients WHERE id = 'c1'")
		if err := dbError("deleting client", fkErr); !errors.Is(err, ErrInUse) {
			t.Errorf("delete: %v, want ErrInUse", err)
		}
		_, fkErr = db.ExecContext(ctx, `INSERT INTO sites (id, client_id, name, name_fold, created_at, updated_at) VALUES ('s2', 'gone', 'S', 's', 0, 0)`)
		if err := dbError("creating site", fkErr); err == nil || errors.Is(err, ErrInUse) || FieldErrors(err) != nil {
			t.Errorf("insert: %v, want a plain error", err)
		}
		_, uqErr := db.ExecContext(ctx, `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at) VALUES ('c2', 'A', 'a', 'b', 0, 0)`)
		fes := FieldErrors(dbError("creating client", uqErr))
		if len(fes) != 1 || fes[0].Field != "name" {
			t.Errorf("unique: %v, want a field error on name", fes)
		}
	})
}

func FuzzCheckAddress(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "::1", "db1.example.", "a..b", "fe80::1%eth0", "1.2.3.4.5", "-x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkAddress(s) != "" {
			return
		}
		// Whatever is accepted is an IP address or a host name of plain ASCII labels.
		if _, err := netip.ParseAddr(s); err == nil {
			return
		}
		if len(s) > 254 || strings.ContainsAny(s, " _/:%@") || strings.Contains(s, "..") {
			t.Errorf("accepted %q", s)
		}
	})
}

func FuzzCheckTarget(f *testing.F) {
	for _, s := range []string{"db1:5432", "[::1]:80", "http://x/y", "https://u@h:1/", "db1", ":", "http://[::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = checkTarget(s) // must not panic
		_ = checkCredentialsRef(s)
		_ = checkAgentURL(s)
	})
}
