package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkScrape is one whole scrape as Prometheus makes it (its Accept header, gzip) through the
// agent's handler, with the default collectors: the cost the side-by-side script measures from
// outside, here with a profile.
func BenchmarkScrape(b *testing.B) {
	for _, tt := range []struct {
		name   string
		config string
	}{
		{"default", ""},
		{"host-families", "collectors:\n  disable: [processes, process_groups, listeners, kernel_log, reboot]\n"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			dir := b.TempDir()
			opts := Options{StateDir: dir}
			if tt.config != "" {
				opts.ConfigFile = dir + "/agent.yml"
				if err := writeConfig(opts.ConfigFile, tt.config); err != nil {
					b.Fatal(err)
				}
			}
			a, err := New(opts)
			if err != nil {
				b.Fatal(err)
			}
			h := a.Handler()
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
			req.Header.Set("Accept-Encoding", "gzip")
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
				_, _ = io.Copy(io.Discard, w.Body)
			}
		})
	}
}
