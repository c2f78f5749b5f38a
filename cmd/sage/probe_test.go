package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProbeCommand runs `sage probe` in-process against loopback servers.
func TestProbeCommand(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("X-Probe") != "" {
			w.Header().Set("X-Echo", r.Header.Get("X-Probe"))
		}
		_, _ = w.Write([]byte("service healthy\n"))
	}))
	defer site.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			c.Close()
		}
	}()
	dir := t.TempDir()
	modFile := filepath.Join(dir, "blackbox.yml")
	if err := os.WriteFile(modFile, []byte("modules:\n  healthy:\n    prober: http\n    http:\n      fail_if_body_not_matches_regexp: [healthy]\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		args []string
		code int
		out  []string // substrings of stdout
		err  []string // substrings of stderr
	}{
		{"http ok", []string{"http", site.URL, "--header", "X-Probe: 1", "--regex", "healthy"}, 0,
			[]string{"http " + site.URL + ": OK", "status      200", "connect"}, nil},
		{"flags before target", []string{"http", "--status", "404", site.URL + "/missing"}, 0, []string{": OK", "status      404"}, nil},
		{"http wrong status", []string{"http", site.URL + "/missing"}, 1, []string{"FAILED", "status", "status      404"}, nil},
		{"http metrics", []string{"http", site.URL, "--metrics"}, 0,
			[]string{"# TYPE probe_success gauge", "probe_success 1", "probe_http_status_code 200"}, nil},
		{"module file", []string{"http", site.URL, "--module-file", modFile, "--module", "healthy"}, 0, []string{": OK"}, nil},
		{"module file, regex fails", []string{"http", site.URL + "/missing", "--module-file", modFile, "--module", "healthy", "--status", "404"}, 1,
			[]string{"FAILED", "content"}, nil},
		{"tcp ok", []string{"tcp", ln.Addr().String()}, 0, []string{"tcp " + ln.Addr().String() + ": OK"}, nil},
		{"tcp refused", []string{"tcp", "127.0.0.1:1"}, 1, []string{"FAILED", "connect", "refused"}, nil},
		{"unknown kind", []string{"gopher", "x"}, 2, nil, []string{`unknown kind "gopher"`}},
		{"no target", []string{"tcp"}, 2, nil, []string{"want exactly one target"}},
		{"two targets", []string{"tcp", "a:1", "b:1"}, 2, nil, []string{"want exactly one target"}},
		{"bad flag", []string{"tcp", "a:1", "--nope"}, 2, nil, []string{"flag provided but not defined"}},
		{"dns without name", []string{"dns", "127.0.0.1"}, 2, nil, []string{"--query-name is required"}},
		{"module without file", []string{"http", site.URL, "--module", "x"}, 2, nil, []string{"go together"}},
		{"unknown module", []string{"http", site.URL, "--module-file", modFile, "--module", "nope"}, 2, nil, []string{`--module "nope": not in`, "healthy"}},
		{"module of another prober", []string{"tcp", "a:1", "--module-file", modFile, "--module", "healthy"}, 2, nil, []string{"runs the http prober"}},
		{"bad size", []string{"throughput", site.URL, "--size", "10 parsecs"}, 2, nil, []string{"--size"}},
		{"bad status", []string{"http", site.URL, "--status", "ok"}, 2, nil, []string{"--status"}},
		{"ipv4 and ipv6", []string{"icmp", "127.0.0.1", "--ipv4", "--ipv6"}, 2, nil, []string{"exclusive"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"probe"}, tc.args...), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, w := range tc.out {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tc.err {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

// TestProbeCommandICMP pings loopback when this machine allows ICMP sockets (root, or
// net.ipv4.ping_group_range); the round's figures are printed.
func TestProbeCommandICMP(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"probe", "icmp", "127.0.0.1", "--count", "3", "--interval", "10ms", "--ipv4"}, &stdout, &stderr)
	if code != 0 {
		if strings.Contains(stdout.String(), "permission") || strings.Contains(stdout.String(), "not permitted") {
			t.Skipf("no ICMP socket here: %s", stdout.String())
		}
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	for _, w := range []string{"3 sent, 3 received, 0.0% loss", "rtt         min/avg/max = ", "jitter"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
		}
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"10MiB", 10 << 20, true}, {"1GB", 1e9, true}, {"512", 512, true}, {"1.5k", 1500, true},
		{"2 MB", 2e6, true}, {"0", 0, false}, {"-1", 0, false}, {"5TB", 0, false}, {"x", 0, false}, {"2GiB", 0, false},
	}
	for _, c := range cases {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"10MiB", "1GB", "512", "1.5k", "", "1e3", "..", "9999999999999999999GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && (n < 1 || n > 1<<30) {
			t.Fatalf("parseSize(%q) = %d, outside the bounds", s, n)
		}
	})
}
