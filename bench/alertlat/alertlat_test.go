package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", ms(7), 99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"median of five is the third", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"p99 of 40 is the maximum", ms(seq(40)...), 99, 40 * time.Millisecond},
		{"p99 of 200 is the 198th", ms(seq(200)...), 99, 198 * time.Millisecond},
		{"p0 is the minimum", ms(3, 4), 0, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func TestSummarize(t *testing.T) {
	s := summarize([]time.Duration{3 * time.Second, time.Second, 2 * time.Second})
	if s.n != 3 || s.min != time.Second || s.median != 2*time.Second || s.max != 3*time.Second || s.avg != 2*time.Second {
		t.Errorf("summarize = %+v", s)
	}
}

func TestParseMail(t *testing.T) {
	for _, tc := range []struct {
		name    string
		raw     string
		host    string
		firing  bool
		wantErr bool
	}{
		{"hub firing", "Subject: [FIRING:CRITICAL] bench/brk007 BenchBreach (watermark 5)\r\n\r\nbody", "brk007", true, false},
		{"hub resolved", "Subject: [RESOLVED] bench/brk007 BenchBreach\r\n\r\nbody", "brk007", false, false},
		{"alertmanager firing", "Subject: firing brk012 BenchBreachFast\r\n\r\n", "brk012", true, false},
		{"alertmanager resolved", "Subject: resolved brk012 BenchBreachFast\r\n\r\n", "brk012", false, false},
		{"encoded subject", "Subject: =?utf-8?q?=5BFIRING=3ACRITICAL=5D_bench/brk100_x?=\r\n\r\n", "brk100", true, false},
		{"no host", "Subject: firing somewhere\r\n\r\n", "", false, true},
		{"host inside a longer word is not a host", "Subject: firing xbrk001\r\n\r\n", "", false, true},
		{"not a message", "no header here", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, firing, err := parseMail([]byte(tc.raw))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if host != tc.host || firing != tc.firing {
				t.Errorf("parseMail = %q, %v; want %q, %v", host, firing, tc.host, tc.firing)
			}
		})
	}
}

func FuzzParseMail(f *testing.F) {
	f.Add([]byte("Subject: [FIRING:CRITICAL] bench/brk007 BenchBreach\r\n\r\nbody"))
	f.Add([]byte("Subject: resolved brk012 BenchBreachFast\r\n\r\n"))
	f.Add([]byte("Subject: =?utf-8?q?brk100?=\r\n\r\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, raw []byte) {
		host, _, err := parseMail(raw)
		if err == nil && !hostRe.MatchString(host) {
			t.Errorf("accepted host %q that is not a benchmark host", host)
		}
		if err != nil && host != "" {
			t.Errorf("an error (%v) with a host %q", err, host)
		}
	})
}

func TestSplitPath(t *testing.T) {
	for _, tc := range []struct {
		path, scraper, host string
		ok                  bool
	}{
		{"/hub/brk001/metrics", "hub", "brk001", true},
		{"/prom/brk002/metrics", "prom", "brk002", true},
		{"/hub/brk001/metrics/", "", "", false},
		{"/hub//metrics", "", "", false},
		{"/metrics", "", "", false},
		{"/hub/brk001/other", "", "", false},
	} {
		scraper, host, ok := splitPath(tc.path)
		if scraper != tc.scraper || host != tc.host || ok != tc.ok {
			t.Errorf("splitPath(%q) = %q, %q, %v; want %q, %q, %v", tc.path, scraper, host, ok, tc.scraper, tc.host, tc.ok)
		}
	}
}

func FuzzSplitPath(f *testing.F) {
	f.Add("/hub/brk001/metrics")
	f.Add("//x/metrics")
	f.Fuzz(func(t *testing.T, p string) {
		scraper, host, ok := splitPath(p)
		if ok && (scraper == "" || host == "" || strings.Contains(scraper+host, "/")) {
			t.Errorf("splitPath(%q) = %q, %q, true", p, scraper, host)
		}
	})
}

// TestExporter: a host reads calm until its breach starts; the first scrape of each scraper that
// is served the breach is noted once, and a new breach notes it afresh.
func TestExporter(t *testing.T) {
	x := newExporter([]string{"brk001", "brk002"})
	srv := httptest.NewServer(x)
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/hub/brk001/metrics"); code != 200 || !strings.Contains(body, "\nbench_level 0\n") {
		t.Fatalf("calm host: %d %q", code, body)
	}
	if code, _ := get("/hub/brk999/metrics"); code != 404 {
		t.Errorf("unknown host: %d, want 404", code)
	}
	if _, ok := x.ingestedAt("brk001", "hub"); ok {
		t.Error("ingestion noted before any breach")
	}
	x.set("brk001", true)
	if _, body := get("/hub/brk001/metrics"); !strings.Contains(body, "\nbench_level 9\n") {
		t.Fatalf("breaching host served %q", body)
	}
	first, ok := x.ingestedAt("brk001", "hub")
	if !ok {
		t.Fatal("the breach's first scrape was not noted")
	}
	get("/hub/brk001/metrics")
	if again, _ := x.ingestedAt("brk001", "hub"); !again.Equal(first) {
		t.Errorf("a second scrape moved the ingestion from %v to %v", first, again)
	}
	if _, ok := x.ingestedAt("brk001", "prom"); ok {
		t.Error("a scraper that has not scraped the breach has an ingestion")
	}
	if _, body := get("/hub/brk002/metrics"); !strings.Contains(body, "\nbench_level 0\n") {
		t.Errorf("another host breaches too: %q", body)
	}
	x.set("brk001", false)
	if _, body := get("/hub/brk001/metrics"); !strings.Contains(body, "\nbench_level 0\n") {
		t.Errorf("ended breach still served: %q", body)
	}
	x.set("brk001", true)
	if _, ok := x.ingestedAt("brk001", "hub"); ok {
		t.Error("a new breach kept the previous breach's ingestion")
	}
	if got := x.minScrapes("hub"); got != 1 {
		t.Errorf("minScrapes(hub) = %d, want 1 (brk002 was scraped once)", got)
	}
}
