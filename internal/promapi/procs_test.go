package promapi

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/serversage/sage/internal/testenv"
)

// startAgent runs `sage agent` on a free port and returns its address.
func startAgent(t *testing.T, bin string) string {
	t.Helper()
	addr := testenv.FreeAddr(t)
	testenv.Start(t, "http://"+addr+"/healthz", bin, "agent", "--listen", addr, "--state-dir", t.TempDir())
	return addr
}

// startPrometheus runs the real prometheus scraping target every second with the given target
// labels, and returns its base URL.
func startPrometheus(t *testing.T, prom, target string, labels map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sage\n    static_configs:\n      - targets: ['%s']\n        labels:\n", target)
	for k, v := range labels {
		cfg += fmt.Sprintf("          %s: %q\n", k, v)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	testenv.Start(t, "http://"+addr+"/-/ready", prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	return "http://" + addr
}
