// Command alertlat is the driver behind bench/alert-latency.sh: it measures breach-to-notification
// latency of the ServerSage hub and of Prometheus + Alertmanager side by side, in one run, on the
// same breaches.
//
// It serves N synthetic hosts (one gauge each) that the hub and Prometheus both scrape at the same
// interval, and receives every notification on an in-process SMTP server. For each breach it flips
// one host's gauge above its watermark, notes when each scraper was first served the breaching
// value (the ingestion of the breaching sample), and waits for each system's mail: latency is from
// that scrape to the end of the mail's DATA. Each breach is on a host of its own, so that every
// breach is a new incident in the hub and a new aggregation group in Alertmanager (as a breach on
// another machine is), and breaches may overlap without touching each other.
//
//	alertlat -sage BIN [-prometheus BIN] [-alertmanager BIN] [-breaches N] [-gap D] [-default=false]
//
// It is a benchmark tool, not part of the sage binary.
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/serversage/sage/internal/store"
)

type options struct {
	sage, prometheus, alertmanager string
	breaches                       int
	gap, jitter, scrape, timeout   time.Duration
	withDefault                    bool
	work                           string
	keep                           bool
}

func main() {
	var o options
	flag.StringVar(&o.sage, "sage", "", "the sage binary (required)")
	flag.StringVar(&o.prometheus, "prometheus", "prometheus", "the prometheus binary")
	flag.StringVar(&o.alertmanager, "alertmanager", "prometheus-alertmanager", "the alertmanager binary (Debian names it prometheus-alertmanager)")
	flag.IntVar(&o.breaches, "breaches", 40, "number of breaches, one synthetic host each")
	flag.DurationVar(&o.gap, "gap", 4*time.Second, "time between the starts of two breaches, plus a random jitter")
	flag.DurationVar(&o.jitter, "jitter", 2*time.Second, "upper bound of the random time added to each gap, so breaches fall at every phase of the scrape and evaluation ticks")
	flag.DurationVar(&o.scrape, "scrape-interval", time.Second, "scrape interval of both the hub and Prometheus")
	flag.DurationVar(&o.timeout, "timeout", 150*time.Second, "how long a breach waits for each mail")
	flag.BoolVar(&o.withDefault, "default", true, "also measure a rule group at Prometheus's default evaluation_interval (1m); each breach then lasts up to ~95 s")
	flag.StringVar(&o.work, "work", "", "working directory (default: a new temporary one, removed at the end)")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (configurations, logs, the hub's state)")
	flag.Parse()
	if o.sage == "" || o.breaches < 1 || o.breaches > 999 {
		fmt.Fprintln(os.Stderr, "usage: alertlat -sage BIN [-breaches 1..999] [flags]")
		flag.PrintDefaults()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "alertlat:", err)
		os.Exit(1)
	}
}

// breach is what one breach recorded.
type breach struct {
	host     string
	flip     time.Time
	ingested map[string]time.Time // scraper ("hub", "prom") -> first scrape served the breach
	mail     map[string]time.Time // receiver -> end of DATA of its first firing mail
	evalAt   map[string]time.Time // Prometheus alert -> its startsAt in Alertmanager (the firing evaluation)
}

func run(ctx context.Context, o options) error {
	work := o.work
	if work == "" {
		d, err := os.MkdirTemp("", "alertlat-")
		if err != nil {
			return err
		}
		work = d
		if !o.keep {
			defer os.RemoveAll(work)
		}
	}
	hosts := make([]string, o.breaches)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("brk%03d", i+1)
	}

	box, err := newSink()
	if err != nil {
		return fmt.Errorf("smtp sink: %w", err)
	}
	defer box.Close()
	exp := newExporter(hosts)
	expLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	expSrv := &http.Server{Handler: exp, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = expSrv.Serve(expLn) }()
	defer expSrv.Close()
	expAddr := expLn.Addr().String()

	hubAddr, err := freeAddr()
	if err != nil {
		return err
	}
	promAddr, err := freeAddr()
	if err != nil {
		return err
	}
	amAddr, err := freeAddr()
	if err != nil {
		return err
	}
	hubDir := filepath.Join(work, "hub")
	hubCfg, err := setupHub(ctx, hubDir, hubAddr, expAddr, box.addr, hosts, o.scrape)
	if err != nil {
		return err
	}
	promCfg, err := writePrometheus(work, amAddr, expAddr, hosts, o.scrape, o.withDefault)
	if err != nil {
		return err
	}
	amCfg, err := writeAlertmanager(work, box.addr)
	if err != nil {
		return err
	}

	am, err := startProc("alertmanager", filepath.Join(work, "alertmanager.log"), nil, o.alertmanager,
		"--config.file="+amCfg, "--storage.path="+filepath.Join(work, "am-data"), "--web.listen-address="+amAddr,
		"--cluster.listen-address=", "--log.level=warn")
	if err != nil {
		return err
	}
	defer am.stop()
	prom, err := startProc("prometheus", filepath.Join(work, "prometheus.log"), nil, o.prometheus,
		"--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(work, "prom-data"), "--web.listen-address="+promAddr,
		"--log.level=warn")
	if err != nil {
		return err
	}
	defer prom.stop()
	hub, err := startProc("hub", filepath.Join(work, "hub.log"), []string{"SAGE_ADMIN_PASSWORD=" + randomSecret()}, o.sage,
		"hub", "--config", hubCfg, "--log.level", "warn")
	if err != nil {
		return err
	}
	defer hub.stop()
	for _, w := range []struct {
		p   *proc
		url string
	}{{am, "http://" + amAddr + "/-/ready"}, {prom, "http://" + promAddr + "/-/ready"}, {hub, "http://" + hubAddr + "/readyz"}} {
		if err := waitReady(ctx, w.p, w.url, time.Minute); err != nil {
			return err
		}
	}
	// Every host scraped a few times by both, so that targets, watermark series and rule groups
	// are all in place before the first breach.
	deadline := time.Now().Add(2 * time.Minute)
	for exp.minScrapes("hub") < 3 || exp.minScrapes("prom") < 3 {
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: not every host was scraped 3 times in 2 minutes (hub %d, prometheus %d)", exp.minScrapes("hub"), exp.minScrapes("prom"))
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}

	receivers := []string{rcptHub, rcptFast}
	if o.withDefault {
		receivers = append(receivers, rcptDefault)
	}
	load0 := loadavg()
	cpu0 := map[string]time.Duration{"hub": hub.cpu(), "prometheus": prom.cpu(), "alertmanager": am.cpu()}
	began := time.Now()
	fmt.Fprintf(os.Stderr, "alertlat: %d breaches, one every %s + up to %s; waiting for %s\n", o.breaches, o.gap, o.jitter, strings.Join(receivers, ", "))

	results := make([]breach, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		if err := sleep(ctx, o.gap+time.Duration(rand.Int64N(int64(o.jitter)+1))); err != nil {
			return err
		}
		exp.set(h, true)
		results[i] = breach{host: h, flip: time.Now(), mail: map[string]time.Time{}, evalAt: map[string]time.Time{}}
		wg.Add(1)
		go func(b *breach) {
			defer wg.Done()
			until := b.flip.Add(o.timeout)
			for _, r := range receivers {
				if at, ok := box.wait(r, b.host, until); ok {
					b.mail[r] = at
				}
			}
			// Still firing: Alertmanager has the alerts, with the evaluation that fired them.
			b.evalAt = amStartsAt(ctx, amAddr, b.host)
			exp.set(b.host, false)
			b.ingested = map[string]time.Time{}
			for _, s := range []string{"hub", "prom"} {
				if t, ok := exp.ingestedAt(b.host, s); ok {
					b.ingested[s] = t
				}
			}
			fmt.Fprintf(os.Stderr, "alertlat: %s: %s\n", b.host, b.line())
		}(&results[i])
	}
	wg.Wait()
	ended := time.Now()
	load1 := loadavg()
	cpu := map[string]time.Duration{"hub": hub.cpu() - cpu0["hub"], "prometheus": prom.cpu() - cpu0["prometheus"], "alertmanager": am.cpu() - cpu0["alertmanager"]}

	// The hub's own record of each breach, read once it has stopped.
	hub.stop()
	traces, terr := hubTraces(context.WithoutCancel(ctx), filepath.Join(hubDir, "sage.db"))

	fmt.Printf("\n%s, %s, %d cores; load average (1/5/15 min) %s at the start, %s at the end; %s of breaches\n",
		began.UTC().Format(time.RFC3339), kernel(), runtime.NumCPU(), load0, load1, ended.Sub(began).Round(time.Second))
	fmt.Printf("%s; %s; hub: %s\n", firstLine(o.prometheus, "--version"), firstLine(o.alertmanager, "--version"), firstLine(o.sage, "version"))
	fmt.Printf("%d breaches, one synthetic host each, one every %s + U[0, %s]; scrape interval %s for both\n\n", o.breaches, o.gap, o.jitter, o.scrape)
	report(results, traces, o.withDefault)
	if terr != nil {
		fmt.Printf("\nhub breakdown unavailable: %v\n", terr)
	}
	fmt.Printf("\nCPU during the breaches (utime+stime): hub %s, prometheus %s, alertmanager %s\n",
		cpu["hub"].Round(10*time.Millisecond), cpu["prometheus"].Round(10*time.Millisecond), cpu["alertmanager"].Round(10*time.Millisecond))
	firing, resolved, bad := box.counts()
	fmt.Printf("mails received: firing %v, resolved %v, not about a benchmark host %d\n", firing, resolved, bad)
	if o.keep {
		fmt.Printf("working directory kept: %s\n", work)
	}
	return nil
}

func (b *breach) line() string {
	var parts []string
	for _, r := range []string{rcptHub, rcptFast, rcptDefault} {
		at, ok := b.mail[r]
		if !ok {
			continue
		}
		src := "prom"
		if r == rcptHub {
			src = "hub"
		}
		if in, ok := b.ingested[src]; ok {
			parts = append(parts, fmt.Sprintf("%s %ss", r, secs(at.Sub(in))))
		}
	}
	return strings.Join(parts, ", ")
}

// report prints the figures as Markdown tables.
func report(results []breach, traces map[string]hubTrace, withDefault bool) {
	type system struct {
		name, receiver, scraper string
	}
	systems := []system{
		{"ServerSage hub, evaluation_interval 1s (its default)", rcptHub, "hub"},
		{"Prometheus + Alertmanager, evaluation_interval 1s, Alertmanager's default group_wait 30s", rcptFast, "prom"},
	}
	if withDefault {
		systems = append(systems, system{"Prometheus + Alertmanager out of the box: evaluation_interval 1m (default), group_wait 30s", rcptDefault, "prom"})
	}
	lat := map[string][]time.Duration{}
	fromFlip := map[string][]time.Duration{}
	missing := map[string]int{}
	for _, b := range results {
		for _, s := range systems {
			at, ok := b.mail[s.receiver]
			in, ingested := b.ingested[s.scraper]
			if !ok || !ingested {
				missing[s.receiver]++
				continue
			}
			lat[s.receiver] = append(lat[s.receiver], at.Sub(in))
			fromFlip[s.receiver] = append(fromFlip[s.receiver], at.Sub(b.flip))
		}
	}
	hub := summarize(lat[rcptHub])
	fmt.Println("Breach to notification: from the first scrape that carried the breaching value to the SMTP server's end of DATA, seconds")
	fmt.Println()
	fmt.Println("| system | notified | median | p99 | min | max | mean | median from the flip | peer/hub, median | peer/hub, p99 |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range systems {
		m := summarize(lat[s.receiver])
		f := summarize(fromFlip[s.receiver])
		rm, rp := "", ""
		if s.receiver != rcptHub {
			rm, rp = "**"+ratio(m.median, hub.median)+"**", "**"+ratio(m.p99, hub.p99)+"**"
		}
		fmt.Printf("| %s | %d/%d | **%s** | **%s** | %s | %s | %s | %s | %s | %s |\n", s.name, m.n, m.n+missing[s.receiver],
			secs(m.median), secs(m.p99), secs(m.min), secs(m.max), secs(m.avg), secs(f.median), rm, rp)
	}

	// Where the time goes.
	var stages [5][]time.Duration
	for _, b := range results {
		t, ok := traces[b.host]
		in, ingested := b.ingested["hub"]
		mail, mailed := b.mail[rcptHub]
		if !ok || !ingested || !mailed {
			continue
		}
		for i, d := range []time.Duration{t.firedAt.Sub(in), t.received.Sub(t.firedAt), t.enqueued.Sub(t.received), t.claimed.Sub(t.enqueued), mail.Sub(t.claimed)} {
			stages[i] = append(stages[i], d)
		}
	}
	names := []string{
		"scrape -> the rule evaluation that fired (its timestamp)",
		"evaluation timestamp -> incident recorded (Receive)",
		"incident recorded -> mail enqueued (escalation pass)",
		"enqueued -> claimed by the dispatcher",
		"claimed -> SMTP end of DATA",
	}
	fmt.Println()
	fmt.Println("The hub's breaches, stage by stage (the hub's own timestamps, milliseconds; medians do not add up to the total's median):")
	fmt.Println()
	fmt.Println("| stage | median | p99 | max |")
	fmt.Println("|---|---|---|---|")
	for i, n := range names {
		s := summarize(stages[i])
		fmt.Printf("| %s | %d | %d | %d |\n", n, s.median.Milliseconds(), s.p99.Milliseconds(), s.max.Milliseconds())
	}

	fmt.Println()
	fmt.Println("Prometheus + Alertmanager, stage by stage (startsAt as Alertmanager has it, seconds):")
	fmt.Println()
	fmt.Println("| configuration | scrape -> firing evaluation, median | p99 | evaluation -> SMTP end of DATA, median | p99 |")
	fmt.Println("|---|---|---|---|---|")
	peers := []struct{ name, alert, receiver string }{{"evaluation_interval 1s", alertFast, rcptFast}}
	if withDefault {
		peers = append(peers, struct{ name, alert, receiver string }{"evaluation_interval 1m", alertDefault, rcptDefault})
	}
	for _, p := range peers {
		var a, b []time.Duration
		for _, r := range results {
			ev, ok := r.evalAt[p.alert]
			in, ingested := r.ingested["prom"]
			mail, mailed := r.mail[p.receiver]
			if !ok || !ingested || !mailed {
				continue
			}
			a, b = append(a, ev.Sub(in)), append(b, mail.Sub(ev))
		}
		sa, sb := summarize(a), summarize(b)
		fmt.Printf("| %s | %s | %s | %s | %s |\n", p.name, secs(sa.median), secs(sa.p99), secs(sb.median), secs(sb.p99))
	}
}

// hubTrace is one breach as the hub recorded it.
type hubTrace struct {
	firedAt  time.Time // the evaluation that fired the alert (its timestamp: the tick, not when it ran)
	received time.Time // the incident opened (Receive)
	enqueued time.Time // the L1 mail entered the outbox
	claimed  time.Time // the dispatcher claimed it to send
}

// hubTraces reads each BenchBreach incident's timestamps from the hub's state database.
func hubTraces(ctx context.Context, path string) (map[string]hubTrace, error) {
	db, err := store.Open(ctx, path, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT i.labels, ia.starts_at,
		(SELECT MIN(e.at) FROM incident_events e WHERE e.incident_id = i.id AND e.kind = 'fired'),
		n.created_at, n.last_attempt_at
		FROM incidents i
		JOIN incident_alerts ia ON ia.incident_id = i.id
		JOIN notifications n ON n.incident_id = i.id AND n.channel = 'email' AND n.dedupe_key NOT LIKE '%/resolved/%'
		WHERE i.alertname = $1 ORDER BY n.created_at`, alertHub)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]hubTrace{}
	for rows.Next() {
		var labels string
		var fired, received, enqueued int64
		var claimed *int64
		if err := rows.Scan(&labels, &fired, &received, &enqueued, &claimed); err != nil {
			return nil, err
		}
		var l map[string]string
		if err := json.Unmarshal([]byte(labels), &l); err != nil {
			return nil, err
		}
		if _, seen := out[l["host"]]; seen || claimed == nil {
			continue
		}
		out[l["host"]] = hubTrace{firedAt: store.FromMillis(fired), received: store.FromMillis(received),
			enqueued: store.FromMillis(enqueued), claimed: store.FromMillis(*claimed)}
	}
	return out, rows.Err()
}

// amStartsAt returns, for each alert on host that Alertmanager holds, its startsAt: the
// timestamp of the Prometheus evaluation that fired it.
func amStartsAt(ctx context.Context, addr, host string) map[string]time.Time {
	out := map[string]time.Time{}
	q := url.Values{"filter": {`host="` + host + `"`}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v2/alerts?"+q.Encode(), nil)
	if err != nil {
		return out
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer res.Body.Close()
	var alerts []struct {
		Labels   map[string]string `json:"labels"`
		StartsAt time.Time         `json:"startsAt"`
	}
	if json.NewDecoder(res.Body).Decode(&alerts) != nil {
		return out
	}
	for _, a := range alerts {
		out[a.Labels["alertname"]] = a.StartsAt
	}
	return out
}

// proc is a program the benchmark runs.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	once sync.Once
}

func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// stop ends the program: SIGTERM, then SIGKILL after 15 s.
func (p *proc) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// cpu is the program's user + system CPU time so far, from /proc/PID/stat (in USER_HZ, which
// Linux fixes at 100 for user space).
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; count fields after its closing parenthesis.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func waitReady(ctx context.Context, p *proc, u string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start:\n%s", p.name, p.tail())
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s not ready at %s within %s:\n%s", p.name, u, within, p.tail())
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " / ")
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "linux"
	}
	return "Linux " + strings.TrimSpace(string(b))
}

// firstLine is the first line a program prints for args (its version).
func firstLine(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return bin + ": " + err.Error()
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// randomSecret is a password nobody needs to know: the benchmark logs in nowhere.
func randomSecret() string { return crand.Text() + crand.Text() }
