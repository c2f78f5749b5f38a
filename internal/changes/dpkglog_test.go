package changes

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

const dpkgLogFixture = `2026-11-22 01:40:08 status installed libc-bin:amd64 2.36-9+deb12u14
2026-11-22 01:40:55 startup archives install
2026-11-22 01:40:55 install sage-test-pkg:all <none> 1.0
2026-11-22 01:40:55 status half-installed sage-test-pkg:all 1.0
2026-11-22 01:40:55 status unpacked sage-test-pkg:all 1.0
2026-11-22 01:40:55 configure sage-test-pkg:all 1.0 1.0
2026-11-22 01:40:56 status installed sage-test-pkg:all 1.0
2026-11-22 01:41:10 startup archives install
2026-11-22 01:41:10 upgrade sage-test-pkg:all 1.0 2.0
2026-11-22 01:41:10 status half-configured sage-test-pkg:all 1.0
2026-11-22 01:41:11 status unpacked sage-test-pkg:all 2.0
2026-11-22 01:41:11 configure sage-test-pkg:all 2.0 2.0
2026-11-22 01:41:12 status installed sage-test-pkg:all 2.0
2026-11-22 01:42:00 remove old:amd64 3.0 <none>
2026-11-22 01:42:00 status half-installed old:amd64 3.0
2026-11-22 01:42:00 status config-files old:amd64 3.0
2026-11-22 01:42:01 purge old:amd64 3.0 <none>
2026-11-22 01:42:01 status not-installed old:amd64 <none>
2026-11-22 01:43:00 upgrade busy:amd64 1 2
2026-11-22 01:43:00 status half-installed busy:amd64 1
2026-11-22 01:44:00 trigproc man-db:amd64 2.11 <none>
2026-11-22 01:44:00 status half-configured man-db:amd64 2.11
2026-11-22 01:44:00 status installed man-db:amd64 2.11
garbage line
2026-13-45 99:99:99 upgrade bad:amd64 1 2
2026-11-22 01:45:00 upgrade short:amd64
2026-11-22 01:46:00 upgrade noarch 1 2
2026-11-22 01:46:01 status installed noarch 2
`

func TestParseDpkgLog(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("15:04:05", s, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		return time.Date(2026, 11, 22, tm.Hour(), tm.Minute(), tm.Second(), 0, time.UTC)
	}
	ws := ParseDpkgLog([]byte(dpkgLogFixture), time.UTC)
	tests := []struct {
		pkg              string
		action, from, to string
		start, end       string
		open             bool
		changeAction     string
	}{
		{"sage-test-pkg:all", "upgrade", "1.0", "2.0", "01:41:10", "01:41:12", false, Changed},
		{"old:amd64", "purge", "3.0", "", "01:42:00", "01:42:01", false, Removed},
		{"busy:amd64", "upgrade", "1", "2", "01:43:00", "01:43:00", true, Changed},
		{"man-db:amd64", "trigproc", "2.11", "2.11", "01:44:00", "01:44:00", false, Changed},
		{"noarch", "upgrade", "1", "2", "01:46:00", "01:46:01", false, Changed},
	}
	for _, tc := range tests {
		w, ok := ws[tc.pkg]
		if !ok {
			t.Errorf("%s: no window", tc.pkg)
			continue
		}
		if w.Action != tc.action || w.From != tc.from || w.To != tc.to || !w.Start.Equal(at(tc.start)) || !w.End.Equal(at(tc.end)) || w.Open != tc.open || w.ChangeAction() != tc.changeAction {
			t.Errorf("%s: got %+v", tc.pkg, w)
		}
	}
	for _, pkg := range []string{"libc-bin:amd64", "bad:amd64", "short:amd64"} {
		if w, ok := ws[pkg]; ok {
			t.Errorf("%s: unexpected window %+v", pkg, w)
		}
	}
}

func TestWindowContains(t *testing.T) {
	base := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	closed := Window{Start: base, End: base.Add(2 * time.Second)}
	open := Window{Start: base, End: base, Open: true}
	slack, limit := 5*time.Second, 30*time.Minute
	tests := []struct {
		name string
		w    Window
		t    time.Time
		now  time.Time
		want bool
	}{
		{"inside", closed, base.Add(time.Second), base.Add(time.Hour), true},
		{"within slack before", closed, base.Add(-4 * time.Second), base.Add(time.Hour), true},
		{"last second and slack", closed, base.Add(7900 * time.Millisecond), base.Add(time.Hour), true},
		{"after", closed, base.Add(9 * time.Second), base.Add(time.Hour), false},
		{"before", closed, base.Add(-6 * time.Second), base.Add(time.Hour), false},
		{"open runs to now", open, base.Add(10 * time.Minute), base.Add(10 * time.Minute), true},
		{"open but not past its limit", open, base.Add(40 * time.Minute), base.Add(40 * time.Minute), false},
	}
	for _, tc := range tests {
		if got := tc.w.Contains(tc.t, tc.now, slack, limit); got != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
}

// TestDpkgLogFollow reads a log in pieces (a line cut in the middle), then after rotation.
func TestDpkgLogFollow(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "dpkg.log")
	os.WriteFile(p, []byte("2026-11-22 01:00:00 upgrade a:all 1 2\n2026-11-22 01:00:01 status inst"), 0o644)
	l := NewDpkgLog(Config{}, p, time.UTC)
	if err := l.Refresh(); err != nil {
		t.Fatal(err)
	}
	if w, ok := l.Window("a:all"); !ok || !w.Open {
		t.Fatalf("before the line is complete: %+v %v", w, ok)
	}
	if !l.Busy(time.Date(2026, 11, 22, 1, 0, 5, 0, time.UTC), time.Minute) {
		t.Error("not busy during an open transaction")
	}
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("alled a:all 2\n")
	f.Close()
	if err := l.Refresh(); err != nil {
		t.Fatal(err)
	}
	if w, _ := l.Window("a:all"); w.Open || w.To != "2" {
		t.Fatalf("after the line is complete: %+v", w)
	}
	os.Rename(p, p+".1")
	os.WriteFile(p, []byte("2026-11-23 01:00:00 install b:amd64 <none> 1\n"), 0o644)
	if err := l.Refresh(); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Window("a:all"); !ok {
		t.Error("rotation forgot a window")
	}
	if w, ok := l.Window("b:amd64"); !ok || w.Action != "install" || w.ChangeAction() != Added {
		t.Errorf("after rotation: %+v %v", w, ok)
	}
}

func FuzzDpkgLog(f *testing.F) {
	f.Add([]byte(dpkgLogFixture))
	f.Add([]byte("2026-11-22 01:00:00 status installed x:all 1\n2026-11-22 01:00:00 purge x:all 1 <none>\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for k, w := range ParseDpkgLog(b, time.UTC) {
			if w.Package != k || w.End.Before(w.Start) {
				t.Fatalf("window %q: %+v", k, w)
			}
		}
	})
}
