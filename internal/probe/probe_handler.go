package probe

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"go.yaml.in/yaml/v3"
)

// DefaultTimeoutOffset is subtracted from the scraper's timeout to make a probe's deadline, so the
// answer reaches the scraper in time: blackbox_exporter's --timeout-offset default.
const DefaultTimeoutOffset = 500 * time.Millisecond

// noScrapeTimeout is the budget when the request carries no X-Prometheus-Scrape-Timeout-Seconds:
// blackbox_exporter's, before its offset is taken off.
const noScrapeTimeout = 120 * time.Second

// HandlerOptions configure the /probe handler.
type HandlerOptions struct {
	// Module finds a module by name; it is called on every request, so that a reloaded
	// configuration applies at once.
	Module        func(name string) (*Module, bool)
	TimeoutOffset time.Duration // 0: DefaultTimeoutOffset
	Logger        *slog.Logger
}

// NewHandler returns blackbox_exporter's multi-target endpoint: GET /probe?target=T&module=M runs
// one probe of T with module M (default http_2xx) and answers its samples under blackbox's names,
// in the format the scraper negotiates. The deadline is the scraper's timeout
// (X-Prometheus-Scrape-Timeout-Seconds) less the offset, or the module's timeout when shorter. An
// unknown module or a missing target is a 400; debug=true answers a text log of the probe, the
// samples and the module instead.
func NewHandler(opts HandlerOptions) http.Handler {
	if opts.TimeoutOffset == 0 {
		opts.TimeoutOffset = DefaultTimeoutOffset
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &probeHandler{opts: opts}
}

type probeHandler struct {
	opts HandlerOptions
}

func (h *probeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	params := r.URL.Query()
	moduleName := params.Get("module")
	if moduleName == "" {
		moduleName = "http_2xx"
	}
	m, ok := h.opts.Module(moduleName)
	if !ok {
		http.Error(w, fmt.Sprintf("Unknown module %q", moduleName), http.StatusBadRequest)
		h.opts.Logger.Debug("unknown module", "module", moduleName)
		return
	}
	timeout, err := scrapeTimeout(r, h.opts.TimeoutOffset)
	if err != nil {
		http.Error(w, fmt.Sprintf("Failed to parse timeout from Prometheus header: %s", err), http.StatusInternalServerError)
		return
	}
	target := params.Get("target")
	if target == "" {
		http.Error(w, "Target parameter is missing", http.StatusBadRequest)
		return
	}
	if _, ok := Lookup(m.Prober); !ok {
		http.Error(w, fmt.Sprintf("Unknown prober %q", m.Prober), http.StatusBadRequest)
		return
	}

	debug := params.Get("debug") == "true"
	logger := h.opts.Logger.With("module", moduleName, "target", target)
	var logBuf bytes.Buffer
	if debug {
		logger = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})).
			With("module", moduleName, "target", target)
		logger.Info("beginning probe", "prober", m.Prober, "timeout_seconds", timeout.Seconds())
	}
	res := Run(r.Context(), target, m, timeout, logger)
	if !res.Success {
		logger.Debug("probe failed", "reason", string(res.Reason), "detail", res.Detail, "duration_seconds", res.Duration.Seconds())
	} else if debug {
		logger.Info("probe succeeded", "duration_seconds", res.Duration.Seconds())
	}

	if debug {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var out bytes.Buffer
		out.WriteString("Logs for the probe:\n")
		out.Write(logBuf.Bytes())
		out.WriteString("\n\n\nMetrics that would have been returned:\n")
		_ = WriteResult(&out, res, expfmt.NewFormat(expfmt.TypeTextPlain))
		out.WriteString("\n\n\nModule configuration:\n")
		if y, err := yaml.Marshal(redacted(m)); err == nil {
			out.Write(y)
		}
		_, _ = w.Write(out.Bytes())
		return
	}
	format := expfmt.NegotiateIncludingOpenMetrics(r.Header)
	var out bytes.Buffer
	if err := WriteResult(&out, res, format); err != nil {
		http.Error(w, "encoding the result: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", string(format))
	_, _ = w.Write(out.Bytes())
}

// scrapeTimeout is the probe's budget: the scraper's timeout less offset, as blackbox_exporter
// computes it. Zero lets Run take the module's timeout.
func scrapeTimeout(r *http.Request, offset time.Duration) (time.Duration, error) {
	total := noScrapeTimeout
	if v := r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, err
		}
		if s < 0 || s > 1e6 {
			return 0, fmt.Errorf("%q is out of range", v)
		}
		if s > 0 {
			total = time.Duration(s * float64(time.Second))
		}
	}
	if d := total - offset; d > 0 {
		return d, nil
	}
	return 0, nil
}

// redacted is a copy of m fit to show: inline credentials replaced, as blackbox shows <secret>.
func redacted(m *Module) *Module {
	c := *m
	const secret = "<secret>"
	if ba := c.HTTP.BasicAuth; ba != nil && ba.Password != "" {
		cp := *ba
		cp.Password = secret
		c.HTTP.BasicAuth = &cp
	}
	if c.HTTP.BearerToken != "" {
		c.HTTP.BearerToken = secret
	}
	sensitive := func(k string) bool {
		k = strings.ToLower(k)
		return strings.Contains(k, "auth") || strings.Contains(k, "token") || strings.Contains(k, "cookie") || strings.Contains(k, "key")
	}
	if len(c.HTTP.Headers) > 0 {
		c.HTTP.Headers = maps.Clone(c.HTTP.Headers)
		for k := range c.HTTP.Headers {
			if sensitive(k) {
				c.HTTP.Headers[k] = secret
			}
		}
	}
	if len(c.HTTP.ProxyConnectHeader) > 0 {
		c.HTTP.ProxyConnectHeader = maps.Clone(c.HTTP.ProxyConnectHeader)
		for k := range c.HTTP.ProxyConnectHeader {
			if sensitive(k) {
				c.HTTP.ProxyConnectHeader[k] = []string{secret}
			}
		}
	}
	return &c
}
