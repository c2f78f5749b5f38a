// Command probeload drives the probe benchmarks: bench/probe-vs-blackbox.sh and
// bench/probe-scheduler.sh.
//
//	probeload serve -listen ADDR
//	    a minimal HTTP/1.1 server, the loopback target of the HTTP and TCP probes: every request
//	    gets a 200 and a short body.
//	probeload drive -url EXPORTER -target T -module M [-c N] [-d DUR] [-pid PID] [-label NAME]
//	    N workers call EXPORTER/probe?target=T&module=M back to back for DUR over kept-alive
//	    connections, the way Prometheus scrapes an exporter (its scrape-timeout header, text
//	    format), and count the answers whose probe_success is 1. With -pid it reads that process's
//	    CPU time (utime+stime of /proc/PID/stat) just before the first request and just after the
//	    last answer, so the exporter's CPU covers exactly the driven window. It prints one line of
//	    key=value pairs, its own CPU time among them.
//	probeload metrics -url AGENT/metrics
//	    scrapes the agent's scheduler series and prints, per module, how many targets have
//	    sage_probe_success 1 and 0, and the sums of sage_probe_runs_total, sage_probe_skipped_total
//	    and sage_probe_failures_total: one key=value line per module.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "drive":
		err = drive(os.Args[2:])
	case "metrics":
		err = metrics(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probeload:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: probeload serve|drive|metrics [flags]  (see the package comment)")
	os.Exit(2)
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	body := []byte("ok\n")
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "3")
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Println("listening", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}

// cpuTicks is utime+stime of a process, in clock ticks: all its threads, live and exited.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: fields count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return u + s, nil
}

func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var successLine = []byte("\nprobe_success 1\n")

func drive(args []string) error {
	fs := flag.NewFlagSet("drive", flag.ExitOnError)
	base := fs.String("url", "", "exporter base URL (http://127.0.0.1:9115)")
	target := fs.String("target", "", "probe target")
	module := fs.String("module", "", "probe module")
	conc := fs.Int("c", 16, "concurrent requests")
	dur := fs.Duration("d", 10*time.Second, "how long to drive")
	pid := fs.Int("pid", 0, "exporter process whose CPU time to read before and after (0: none)")
	label := fs.String("label", "", "name printed first on the output line")
	scrapeTimeout := fs.Float64("scrape-timeout", 5, "X-Prometheus-Scrape-Timeout-Seconds sent")
	_ = fs.Parse(args)
	if *base == "" || *target == "" || *module == "" {
		return errors.New("drive needs -url, -target and -module")
	}
	q := url.Values{"target": {*target}, "module": {*module}}
	u := strings.TrimSuffix(*base, "/") + "/probe?" + q.Encode()
	tr := &http.Transport{MaxIdleConnsPerHost: *conc, MaxConnsPerHost: *conc, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: time.Duration(*scrapeTimeout*float64(time.Second)) + time.Second}
	defer tr.CloseIdleConnections()

	// One probe first: a misconfigured exporter fails here, not as a run of zeros.
	body, err := get(client, u, *scrapeTimeout)
	if err != nil {
		return fmt.Errorf("first probe: %w", err)
	}
	if !bytes.Contains(append([]byte("\n"), body...), successLine) {
		return fmt.Errorf("first probe of %s did not succeed:\n%s", u, body)
	}

	var ok, fail, errs atomic.Int64
	lat := make([][]time.Duration, *conc)
	var firstErr atomic.Value
	cpu0 := ownCPU()
	var t0 int64
	if *pid > 0 {
		if t0, err = cpuTicks(*pid); err != nil {
			return err
		}
	}
	start := time.Now()
	deadline := start.Add(*dur)
	var wg sync.WaitGroup
	for w := range *conc {
		wg.Go(func() {
			l := make([]time.Duration, 0, 4096)
			for {
				t := time.Now()
				if !t.Before(deadline) {
					break
				}
				b, err := get(client, u, *scrapeTimeout)
				l = append(l, time.Since(t))
				switch {
				case err != nil:
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				case bytes.Contains(append([]byte("\n"), b...), successLine):
					ok.Add(1)
				default:
					fail.Add(1)
				}
			}
			lat[w] = l
		})
	}
	wg.Wait()
	wall := time.Since(start)
	var t1 int64
	if *pid > 0 {
		if t1, err = cpuTicks(*pid); err != nil {
			return err
		}
	}
	cpu := ownCPU() - cpu0

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))].Seconds() * 1000
	}
	if *label != "" {
		fmt.Printf("label=%s ", *label)
	}
	fmt.Printf("ok=%d fail=%d errors=%d wall_s=%.3f exporter_ticks=%d driver_cpu_s=%.3f p50_ms=%.2f p99_ms=%.2f\n",
		ok.Load(), fail.Load(), errs.Load(), wall.Seconds(), t1-t0, cpu.Seconds(), pct(0.5), pct(0.99))
	if e, _ := firstErr.Load().(string); e != "" {
		fmt.Fprintln(os.Stderr, "probeload: first error:", e)
	}
	return nil
}

func get(c *http.Client, u string, scrapeTimeout float64) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(scrapeTimeout, 'f', -1, 64))
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

type moduleCounts struct {
	targets, success, failed int
	runs, skipped, failures  float64
	sent, received           float64 // ICMP echo requests of the rounds recorded, and their replies
	reasons                  map[string]float64
}

func metrics(args []string) error {
	fs := flag.NewFlagSet("metrics", flag.ExitOnError)
	u := fs.String("url", "", "the agent's /metrics URL")
	_ = fs.Parse(args)
	if *u == "" {
		return errors.New("metrics needs -url")
	}
	resp, err := http.Get(*u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", *u, resp.Status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", *u, err)
	}
	by := map[string]*moduleCounts{}
	module := func(labels map[string]string) *moduleCounts {
		m := labels["module"]
		if by[m] == nil {
			by[m] = &moduleCounts{reasons: map[string]float64{}}
		}
		return by[m]
	}
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			switch name {
			case "sage_probe_success":
				c := module(labels)
				c.targets++
				if m.GetGauge().GetValue() == 1 {
					c.success++
				} else {
					c.failed++
				}
			case "sage_probe_runs_total":
				module(labels).runs += m.GetCounter().GetValue()
			case "sage_probe_skipped_total":
				module(labels).skipped += m.GetCounter().GetValue()
			case "sage_probe_packets_sent_total":
				module(labels).sent += m.GetCounter().GetValue()
			case "sage_probe_packets_received_total":
				module(labels).received += m.GetCounter().GetValue()
			case "sage_probe_failures_total":
				c := module(labels)
				c.failures += m.GetCounter().GetValue()
				c.reasons[labels["reason"]] += m.GetCounter().GetValue()
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(by)) {
		c := by[name]
		var reasons []string
		for _, r := range slices.Sorted(maps.Keys(c.reasons)) {
			reasons = append(reasons, fmt.Sprintf("%s:%.0f", r, c.reasons[r]))
		}
		if len(reasons) == 0 {
			reasons = []string{"none"}
		}
		fmt.Printf("module=%s targets=%d success=%d failed=%d runs=%.0f skipped=%.0f failures=%.0f reasons=%s sent=%.0f received=%.0f\n",
			name, c.targets, c.success, c.failed, c.runs, c.skipped, c.failures, strings.Join(reasons, ","), c.sent, c.received)
	}
	return nil
}
