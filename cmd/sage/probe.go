package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"go.yaml.in/yaml/v3"

	"github.com/serversage/sage/internal/agent"
	"github.com/serversage/sage/internal/probe"
)

func init() {
	commands["probe"] = command{summary: "run one probe (icmp, tcp, http, dns, a database, throughput) and print the result", run: runProbe}
}

// probeKinds are the kinds `sage probe` takes, in the order its usage lists them.
var probeKinds = []string{"icmp", "tcp", "http", "dns", "postgres", "mysql", "mssql", "oracle", "mongodb", "redis", "throughput"}

var dbKinds = []string{"postgres", "mysql", "mssql", "oracle", "mongodb", "redis"}

// probeFlags are `sage probe`'s flags; which apply depends on the kind.
type probeFlags struct {
	count                          int
	interval, timeout              time.Duration
	ipv4, ipv6                     bool
	proxy, method, body, status    string
	regex                          string
	headers                        headerList
	insecure, tls                  bool
	queryName, queryType, protocol string
	user, passwordFile, passEnv    string
	database, query                string
	size                           string
	upload, partial                bool
	tokenFile                      string
	moduleFile, module             string
	metrics, verbose               bool
}

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

func runProbe(args []string, stdout, stderr io.Writer) int {
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: sage probe <kind> <target> [flags]\n\nKinds: %s\n\n", strings.Join(probeKinds, ", "))
		fmt.Fprint(w, `Targets: icmp host; tcp host:port; http URL; dns server[:port]; postgres|mysql|mssql|oracle|mongodb|redis
host[:port][/database]; throughput URL (another agent's http://host:port/throughput, or any URL).

Exit status: 0 when the probe succeeds, 1 when it fails (the reason is printed), 2 on a usage error.

Flags:
`)
	}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		newProbeFlagSet(&probeFlags{}, stdout).PrintDefaults()
		return 0
	}
	kind := args[0]
	if !slices.Contains(probeKinds, kind) {
		fmt.Fprintf(stderr, "sage probe: unknown kind %q; one of %s\n", kind, strings.Join(probeKinds, ", "))
		return 2
	}
	var f probeFlags
	fs := newProbeFlagSet(&f, stderr)
	fs.Usage = func() { usage(stderr); fs.PrintDefaults() }
	// Flags may come before or after the target, as in `sage probe icmp host --count 5`.
	var positional []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			if err == flag.ErrHelp {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "sage probe %s: want exactly one target, got %d\n", kind, len(positional))
		return 2
	}
	target := positional[0]
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	m, err := probeModule(kind, &f, set)
	if err != nil {
		fmt.Fprintf(stderr, "sage probe %s: %v\n", kind, err)
		return 2
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	timeout := f.timeout
	if timeout <= 0 && m.Timeout <= 0 {
		timeout = defaultProbeTimeout(kind, m)
	}
	res := probe.Run(ctx, target, m, timeout, logger)

	printProbeResult(stdout, kind, target, m, res)
	if f.metrics {
		fmt.Fprintln(stdout)
		if err := probe.WriteResult(stdout, res, expfmt.NewFormat(expfmt.TypeTextPlain)); err != nil {
			fmt.Fprintf(stderr, "sage probe: %v\n", err)
		}
	}
	if !res.Success {
		return 1
	}
	return 0
}

func newProbeFlagSet(f *probeFlags, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sage probe", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&f.count, "count", 5, "icmp: echo requests in the round (`n`)")
	fs.DurationVar(&f.interval, "interval", 200*time.Millisecond, "icmp: `spacing` between echo requests")
	fs.DurationVar(&f.timeout, "timeout", 0, "the probe's deadline (`duration`); default: the module's, else 5s (icmp: the round plus 2s, throughput 60s)")
	fs.BoolVar(&f.ipv4, "ipv4", false, "use IPv4 only")
	fs.BoolVar(&f.ipv6, "ipv6", false, "use IPv6 only")
	fs.StringVar(&f.proxy, "proxy", "", "http, throughput: proxy `URL` (http://host:port; CONNECT for https targets)")
	fs.StringVar(&f.method, "method", "", "http: request `method` (default GET)")
	fs.Var(&f.headers, "header", "http: request header `K:V` (repeatable)")
	fs.StringVar(&f.body, "body", "", "http: request `body`")
	fs.StringVar(&f.status, "status", "", "http: accepted status `codes`, comma separated (default 2xx)")
	fs.StringVar(&f.regex, "regex", "", "http: the body must match this `regexp`")
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify the server's TLS certificate")
	fs.BoolVar(&f.tls, "tls", false, "tcp: TLS handshake after connecting")
	fs.StringVar(&f.queryName, "query-name", "", "dns: the `name` to look up (required for dns)")
	fs.StringVar(&f.queryType, "query-type", "A", "dns: the record `type`")
	fs.StringVar(&f.protocol, "transport", "udp", "dns: udp or tcp")
	fs.StringVar(&f.user, "user", "", "database: user `name`")
	fs.StringVar(&f.passwordFile, "password-file", "", "database: `file` holding the password")
	fs.StringVar(&f.passEnv, "password-env", "", "database: environment `variable` holding the password")
	fs.StringVar(&f.database, "database", "", "database: database `name` (redis: number)")
	fs.StringVar(&f.query, "query", "", "database: the `query` to run instead of the kind's trivial one")
	fs.StringVar(&f.size, "size", "", "throughput: bytes to move (`size`, e.g. 10MiB, 1GB; default 10MiB)")
	fs.BoolVar(&f.upload, "upload", false, "throughput: upload instead of download")
	fs.BoolVar(&f.partial, "partial", false, "throughput: succeed with what moved when the deadline cuts the transfer")
	fs.StringVar(&f.tokenFile, "token-file", "", "throughput: `file` holding the bearer token (another agent's mesh or throughput token)")
	fs.StringVar(&f.moduleFile, "module-file", "", "blackbox.yml-style `file` (modules:, auth_modules:) or the agent's configuration (probes:)")
	fs.StringVar(&f.module, "module", "", "use this configured module (`name`) from --module-file; flags given override it")
	fs.BoolVar(&f.metrics, "metrics", false, "print the result in the Prometheus text format too (blackbox_exporter's names)")
	fs.BoolVar(&f.verbose, "verbose", false, "log what the probe does")
	return fs
}

// proberOf is the prober a kind runs.
func proberOf(kind string) string { return kind }

// probeModule builds the module: the named one of --module-file, or the kind's defaults, with
// the flags given on top.
func probeModule(kind string, f *probeFlags, set map[string]bool) (*probe.Module, error) {
	m := &probe.Module{Prober: proberOf(kind)}
	if (f.moduleFile == "") != (f.module == "") {
		return nil, errors.New("--module-file and --module go together")
	}
	if f.moduleFile != "" {
		mod, err := loadModule(f.moduleFile, f.module)
		if err != nil {
			return nil, err
		}
		if mod.Prober != proberOf(kind) {
			return nil, fmt.Errorf("module %q runs the %s prober, not %s", f.module, mod.Prober, kind)
		}
		c := *mod
		m = &c
	} else if kind == "icmp" {
		m.ICMP.Count, m.ICMP.Interval = f.count, f.interval
	}
	if f.ipv4 && f.ipv6 {
		return nil, errors.New("--ipv4 and --ipv6 are exclusive")
	}
	var ipp *probe.IPProtocol
	switch {
	case kind == "icmp":
		ipp = &m.ICMP.IPProtocol
		if set["count"] {
			if f.count < 1 || f.count > 10000 {
				return nil, fmt.Errorf("--count %d: want 1 to 10000", f.count)
			}
			m.ICMP.Count = f.count
		}
		if set["interval"] {
			if f.interval < time.Millisecond {
				return nil, fmt.Errorf("--interval %v: want at least 1ms", f.interval)
			}
			m.ICMP.Interval = f.interval
		}
	case kind == "tcp":
		ipp = &m.TCP.IPProtocol
		if set["tls"] {
			m.TCP.TLS = f.tls
		}
		if set["insecure"] {
			m.TCP.TLSConfig.InsecureSkipVerify = f.insecure
		}
	case kind == "http":
		ipp = &m.HTTP.IPProtocol
		if set["proxy"] {
			m.HTTP.ProxyURL = f.proxy
		}
		if set["method"] {
			m.HTTP.Method = strings.ToUpper(f.method)
		}
		if set["body"] {
			m.HTTP.Body = f.body
		}
		for _, h := range f.headers {
			k, v, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return nil, fmt.Errorf("--header %q: want Name: value", h)
			}
			if m.HTTP.Headers == nil {
				m.HTTP.Headers = map[string]string{}
			}
			m.HTTP.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
		if set["status"] {
			m.HTTP.ValidStatusCodes = nil
			for _, s := range strings.Split(f.status, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n < 100 || n > 999 {
					return nil, fmt.Errorf("--status %q: want status codes such as 200,301", f.status)
				}
				m.HTTP.ValidStatusCodes = append(m.HTTP.ValidStatusCodes, n)
			}
		}
		if set["regex"] {
			m.HTTP.FailIfBodyNotMatchesRegexp = append(m.HTTP.FailIfBodyNotMatchesRegexp, f.regex)
		}
		if set["insecure"] {
			m.HTTP.TLSConfig.InsecureSkipVerify = f.insecure
		}
	case kind == "dns":
		ipp = &m.DNS.IPProtocol
		if set["query-name"] || m.DNS.QueryName == "" {
			m.DNS.QueryName = f.queryName
		}
		if set["query-type"] || m.DNS.QueryType == "" {
			m.DNS.QueryType = strings.ToUpper(f.queryType)
		}
		if set["transport"] || m.DNS.TransportProtocol == "" {
			m.DNS.TransportProtocol = f.protocol
		}
		if m.DNS.QueryName == "" {
			return nil, errors.New("--query-name is required")
		}
		if set["insecure"] {
			m.DNS.TLSConfig.InsecureSkipVerify = f.insecure
		}
	case slices.Contains(dbKinds, kind):
		ipp = &m.DB.IPProtocol
		if set["database"] {
			m.DB.Database = f.database
		}
		if set["query"] {
			m.DB.Query = f.query
		}
		if set["insecure"] {
			m.DB.TLSConfig.InsecureSkipVerify = f.insecure
			if m.DB.TLS == "" || m.DB.TLS == "verify" {
				m.DB.TLS = "require"
			}
		}
		if set["password-file"] && set["password-env"] {
			return nil, errors.New("--password-file and --password-env are exclusive")
		}
		if set["user"] || set["password-file"] || set["password-env"] {
			a := probe.AuthModule{}
			if m.DB.Auth != nil {
				a = *m.DB.Auth
			}
			if set["user"] {
				a.Username = f.user
			}
			if set["password-file"] {
				a.Password = probe.Secret{File: f.passwordFile}
			}
			if set["password-env"] {
				a.Password = probe.Secret{Env: f.passEnv}
			}
			m.DB.Auth = &a
		}
	case kind == "throughput":
		if set["proxy"] {
			m.Throughput.ProxyURL = f.proxy
		}
		if set["upload"] && f.upload {
			m.Throughput.Direction = "upload"
		}
		if set["partial"] {
			m.Throughput.AllowPartial = f.partial
		}
		if set["size"] {
			n, err := parseSize(f.size)
			if err != nil {
				return nil, fmt.Errorf("--size: %w", err)
			}
			m.Throughput.SizeBytes = n
		}
		if set["token-file"] {
			m.Throughput.BearerToken = probe.Secret{File: f.tokenFile}
		}
		if set["insecure"] {
			m.Throughput.TLSConfig.InsecureSkipVerify = f.insecure
		}
	}
	if ipp != nil && (f.ipv4 || f.ipv6) {
		ipp.Preferred = "ip4"
		if f.ipv6 {
			ipp.Preferred = "ip6"
		}
		no := false
		ipp.Fallback = &no
	}
	if set["timeout"] {
		if f.timeout <= 0 {
			return nil, fmt.Errorf("--timeout %v: want a positive duration", f.timeout)
		}
		m.Timeout = f.timeout
	}
	if errs := m.Validate("module"); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	return m, nil
}

// loadModule finds a module in a blackbox.yml-style file, or in an agent configuration (a file
// with a probes: section), whose auth modules then apply.
func loadModule(file, name string) (*probe.Module, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--module-file: %w", err)
	}
	var top map[string]yaml.Node
	_ = yaml.Unmarshal(data, &top) // a malformed file is reported by the loaders below
	if _, ok := top["probes"]; ok {
		cfg, err := agent.LoadConfig(file)
		if err != nil {
			return nil, fmt.Errorf("--module-file:\n%s", indent(err.Error(), "  "))
		}
		m, ok := cfg.Probes.Module(name)
		if !ok {
			return nil, fmt.Errorf("--module %q: not in %s; it has %s", name, file, strings.Join(cfg.Probes.ModuleNames(), ", "))
		}
		return m, nil
	}
	mods, err := probe.LoadModulesFile(file, nil)
	if err != nil {
		return nil, fmt.Errorf("--module-file:\n%s", indent(err.Error(), "  "))
	}
	m, ok := mods[name]
	if !ok {
		names := make([]string, 0, len(mods))
		for n := range mods {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("--module %q: not in %s; it has %s", name, file, strings.Join(names, ", "))
	}
	return m, nil
}

// defaultProbeTimeout is the deadline when neither --timeout nor the module gives one: long
// enough for an ICMP round and a bulk transfer.
func defaultProbeTimeout(kind string, m *probe.Module) time.Duration {
	switch kind {
	case "icmp":
		n := max(m.ICMP.Count, 1)
		return time.Duration(n-1)*m.ICMP.Interval + 2*time.Second
	case "throughput":
		return time.Minute
	}
	return probe.DefaultTimeout
}

// parseSize reads a byte count: a number with an optional unit (k, KB, KiB, M, MB, MiB, G, GB,
// GiB; decimal units are powers of 1000, binary ones of 1024).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size such as 10MiB", s)
	}
	mult := map[string]float64{"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1 << 10, "m": 1e6, "mb": 1e6, "mib": 1 << 20,
		"g": 1e9, "gb": 1e9, "gib": 1 << 30}[strings.ToLower(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown unit %q", s, unit)
	}
	n := v * mult
	if n < 1 || n > float64(probe.MaxThroughputSize) {
		return 0, fmt.Errorf("%q: want 1 byte to %d bytes", s, probe.MaxThroughputSize)
	}
	return int64(n), nil
}

// printProbeResult prints what an L1 engineer reads: the verdict, the reason when it failed,
// and the kind's figures.
func printProbeResult(w io.Writer, kind, target string, m *probe.Module, r *probe.Result) {
	if r.Success {
		fmt.Fprintf(w, "%s %s: OK in %s\n", kind, target, fmtDur(r.Duration))
	} else {
		fmt.Fprintf(w, "%s %s: FAILED in %s: %s", kind, target, fmtDur(r.Duration), r.Reason)
		if r.Detail != "" {
			fmt.Fprintf(w, ": %s", r.Detail)
		}
		fmt.Fprintln(w)
	}
	switch kind {
	case "icmp":
		printICMP(w, r)
	case "http":
		if v, ok := r.Get("probe_http_status_code"); ok && v > 0 {
			fmt.Fprintf(w, "  status      %d\n", int(v))
		}
		if v, ok := r.Get("probe_ssl_earliest_cert_expiry"); ok && v > 0 {
			exp := time.Unix(int64(v), 0).UTC()
			fmt.Fprintf(w, "  certificate expires %s (in %d days)\n", exp.Format(time.DateOnly), int(time.Until(exp).Hours()/24))
		}
	case "throughput":
		bytes, _ := r.Get("probe_throughput_bytes")
		rate, _ := r.Get("probe_throughput_bytes_per_second")
		secs := 0.0
		if rate > 0 {
			secs = bytes / rate
		}
		fmt.Fprintf(w, "  moved       %.0f bytes (%s) in %.3f s: %.2f MB/s (%.1f Mbit/s)\n", bytes, humanBytes(bytes), secs, rate/1e6, rate*8/1e6)
		if v, ok := r.Get("probe_throughput_complete"); ok && v == 0 {
			fmt.Fprintln(w, "  incomplete: the deadline cut the transfer")
		}
	}
	printPhases(w, r, kind == "icmp")
}

func printICMP(w io.Writer, r *probe.Result) {
	sent, got := len(r.RTTs), 0
	lo, hi, sum := math.Inf(1), 0.0, 0.0
	var jit float64
	prev := time.Duration(-1)
	jn := 0
	for _, d := range r.RTTs {
		if d < 0 {
			continue
		}
		got++
		s := d.Seconds()
		lo, hi, sum = min(lo, s), max(hi, s), sum+s
		if prev >= 0 {
			jit += math.Abs((d - prev).Seconds())
			jn++
		}
		prev = d
	}
	if sent == 0 {
		return
	}
	fmt.Fprintf(w, "  packets     %d sent, %d received, %.1f%% loss\n", sent, got, 100*float64(sent-got)/float64(sent))
	if got > 0 {
		fmt.Fprintf(w, "  rtt         min/avg/max = %.3f/%.3f/%.3f ms\n", lo*1e3, sum/float64(got)*1e3, hi*1e3)
	}
	if jn > 0 {
		fmt.Fprintf(w, "  jitter      %.3f ms (mean difference of consecutive RTTs)\n", jit/float64(jn)*1e3)
	}
}

// printPhases prints every sample that times a phase (probe_*_duration_seconds{phase=...}).
func printPhases(w io.Writer, r *probe.Result, icmp bool) {
	for _, s := range r.Samples {
		if !strings.HasSuffix(s.Name, "_duration_seconds") || len(s.Labels) != 2 || s.Labels[0] != "phase" {
			continue
		}
		if icmp && s.Labels[1] == "rtt" {
			continue // the round's figures above say more
		}
		fmt.Fprintf(w, "  %-11s %s\n", s.Labels[1], fmtDur(time.Duration(s.Value*float64(time.Second))))
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.3f ms", float64(d)/1e6)
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return d.Round(time.Millisecond).String()
}

func humanBytes(n float64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", n/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", n/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", n/(1<<10))
	}
	return fmt.Sprintf("%.0f B", n)
}
