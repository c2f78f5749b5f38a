//go:build !agentonly

package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestManualCommand runs `sage manual` in the test process: the shipped pack, a user's rules
// directory, and the errors a user meets.
func TestManualCommand(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	if err := os.MkdirAll(filepath.Join(rules, "runbooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(rules, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("web.yml", "groups:\n  - name: web\n    rules:\n      - alert: WebsiteSlow\n        expr: probe_duration_seconds > 2\n        labels: {severity: warning}\n")
	write("runbooks/WebsiteSlow.md", "# WebsiteSlow\n\n## What it means\n\nSlow.\n\n## How to confirm\n\nCurl it.\n\n"+
		"## L1 action plan\n\n1. Acknowledge the alert.\n2. Run `curl -w '%{time_total}' https://example.com`.\n\n"+
		"## When to escalate\n\nTo L2 within 30 minutes.\n\n## Notes for L2/L3\n\nCheck the CDN.\n")

	tests := []struct {
		name     string
		args     []string
		code     int
		stderr   string
		check    func(t *testing.T, out []byte)
		stdout   bool
		noOutput bool
	}{
		{
			name: "html from the shipped pack and a rules directory",
			args: []string{"--format", "html", "--out", filepath.Join(dir, "m.html"), "--rules", rules},
			check: func(t *testing.T, out []byte) {
				for _, want := range []string{"<!DOCTYPE html>", `data-alert="FilesystemSpaceLow"`, `data-alert="WebsiteSlow"`, "Check the CDN."} {
					if !bytes.Contains(out, []byte(want)) {
						t.Errorf("the manual lacks %q", want)
					}
				}
			},
		},
		{
			name: "pdf",
			args: []string{"--format", "pdf", "--out", filepath.Join(dir, "m.pdf")},
			check: func(t *testing.T, out []byte) {
				if !bytes.HasPrefix(out, []byte("%PDF-")) {
					t.Errorf("not a PDF: %q", out[:min(len(out), 10)])
				}
			},
		},
		{name: "to stdout", args: []string{"--out", "-"}, stdout: true, check: func(t *testing.T, out []byte) {
			if !bytes.Contains(out, []byte("ProcessGroupDown")) {
				t.Error("no manual on stdout")
			}
		}},
		{name: "unknown format", args: []string{"--format", "docx", "--out", filepath.Join(dir, "x")}, code: 2, stderr: `--format "docx": must be html or pdf`, noOutput: true},
		{name: "no output", args: []string{"--format", "pdf"}, code: 2, stderr: "--out is required"},
		{name: "empty rules directory", args: []string{"--out", filepath.Join(dir, "y"), "--rules", t.TempDir()}, code: 1, stderr: "no rule files", noOutput: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"manual"}, tt.args...), &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tt.stderr)
			}
			out := tt.args[len(tt.args)-1]
			for i, a := range tt.args {
				if a == "--out" && i+1 < len(tt.args) {
					out = tt.args[i+1]
				}
			}
			if tt.noOutput {
				if _, err := os.Stat(out); err == nil {
					t.Errorf("%s was written", out)
				}
				return
			}
			if tt.check == nil {
				return
			}
			if tt.stdout {
				tt.check(t, stdout.Bytes())
				return
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, b)
		})
	}

	// A bad rule in the user's directory: named by path, line and field, and no manual written.
	write("bad.yml", "groups:\n  - name: bad\n    rules:\n      - alert: Broken\n        expr: rate(x[5m]\n        labels: {severity: page}\n")
	var stdout, stderr bytes.Buffer
	target := filepath.Join(dir, "bad.html")
	if code := run([]string{"manual", "--out", target, "--rules", rules}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d with an invalid rule file", code)
	}
	for _, want := range []string{filepath.Join(rules, "bad.yml") + ":5: groups[0].rules[0].expr: could not parse expression"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if _, err := os.Stat(target); err == nil {
		t.Error("a manual was written despite invalid rules")
	}
}

// TestManualFromHub: with --hub the manual is the hub's live one, fetched with the API token from
// its file; a refused token is an error that does not print the token.
func TestManualFromHub(t *testing.T) {
	const token = "tok-0123456789abcdefghijklmnopqrstuvwxyz"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/manual" || r.URL.Query().Get("format") != "pdf" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"authentication required"}`, http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("%PDF-1.4 live"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	_ = os.WriteFile(good, []byte(token+"\n"), 0o600)
	_ = os.WriteFile(bad, []byte("wrong-token-value"), 0o600)
	for _, c := range []struct {
		name, tokenFile string
		code            int
		out, errText    string
	}{
		{"live manual", good, 0, "%PDF-1.4 live", ""},
		{"refused", bad, 1, "", "401"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runManual([]string{"--hub", srv.URL, "--token-file", c.tokenFile, "--format", "pdf", "--out", "-"}, &stdout, &stderr)
			if code != c.code || stdout.String() != c.out || !strings.Contains(stderr.String(), c.errText) {
				t.Errorf("code %d stdout %q stderr %q", code, stdout.String(), stderr.String())
			}
			if strings.Contains(stderr.String(), "wrong-token-value") {
				t.Error("the token was printed")
			}
		})
	}
}
