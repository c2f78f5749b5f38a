package agent

import (
	"bufio"
	"log/slog"
	"net/http"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/serversage/sage/internal/collector"
)

// maxScrapesInFlight bounds concurrent scrapes, as promhttp's MaxRequestsInFlight did: each runs
// every collector, so a client looping on /metrics must not multiply the agent's cost.
const maxScrapesInFlight = 4

// metricsHandler serves /metrics. It replaces promhttp.HandlerFor, whose Registry.Gather checks
// and hashes every sample one allocation at a time: the collector set builds its metric families
// directly, the agent's own metrics with them (collector.Set.GatherInto), into storage reused from
// one scrape to the next, and they are written in the format the scraper negotiated: by
// writeFamily for the text formats Prometheus asks for, by expfmt otherwise.
type metricsHandler struct {
	set    func() *collector.Set
	own    *ownMetrics
	logger *slog.Logger
	sem    chan struct{}
	free   chan *scrapeBuf // at most one per scrape in flight

	// extra, when set, returns families served after the collectors' (the probe scheduler's).
	extra func() []*dto.MetricFamily

	mu      sync.Mutex
	formats map[string]expfmt.Format // Accept header -> negotiated format; bounded by maxFormats
}

// maxFormats bounds the negotiation cache: scrapers send one Accept header, always the same, but
// a client could send a new one with every request.
const maxFormats = 16

// scrapeBuf is what one scrape needs and the next can reuse.
type scrapeBuf struct {
	fams   collector.Gathered
	w      *bufio.Writer
	format expfmt.Format  // of enc
	enc    expfmt.Encoder // writes to w, whatever w writes to
	num    []byte         // writeFamily's number buffer
}

func newMetricsHandler(set func() *collector.Set, own *ownMetrics, logger *slog.Logger) *metricsHandler {
	return &metricsHandler{
		set:     set,
		own:     own,
		logger:  logger,
		sem:     make(chan struct{}, maxScrapesInFlight),
		free:    make(chan *scrapeBuf, maxScrapesInFlight),
		formats: map[string]expfmt.Format{},
	}
}

func (h *metricsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		h.own.requests[code503].Add(1)
		http.Error(w, "Limit of concurrent requests reached, try again later.", http.StatusServiceUnavailable)
		return
	}
	h.own.inFlight.Add(1)
	defer h.own.inFlight.Add(-1)

	var buf *scrapeBuf
	select {
	case buf = <-h.free:
	default:
		buf = &scrapeBuf{w: bufio.NewWriterSize(nil, 16<<10)}
	}
	defer func() { // after the families are written out: the next scrape overwrites them
		buf.w.Reset(nil)
		select {
		case h.free <- buf:
		default:
		}
	}()

	if err := h.set().GatherInto(r.Context(), &buf.fams, h.own); err != nil {
		// Inconsistent samples, dropped, or an own metric that failed; the rest is served.
		h.logger.Error("error gathering metrics", "err", err)
	}
	h.own.requests[code200].Add(1)

	format := h.negotiate(r)
	w.Header().Add("Vary", "Accept")
	w.Header().Set("Content-Type", string(format))
	// One buffer for the whole response: expfmt writes to a bufio.Writer directly, where it would
	// take one from its pool and flush it into the response (through gzip) for every family.
	buf.w.Reset(w)
	// Encoding without name escaping: every name the agent exposes is a valid legacy Prometheus
	// name (collector.Desc refuses others), which no escaping scheme changes, so escaping would
	// only cost model.EscapeMetricFamily's copy of every family and metric. The Content-Type
	// still names the negotiated scheme.
	encoder := func() expfmt.Encoder {
		if buf.enc == nil || buf.format != format {
			buf.format, buf.enc = format, expfmt.NewEncoder(buf.w, format.WithEscapingScheme(model.NoEscaping))
		}
		return buf.enc
	}
	exp := expositionOf(format)
	filter := nameFilter(r)
	list := buf.fams.List
	if h.extra != nil {
		// The probe scheduler's families (sage_probe_*), after the collectors': names no
		// collector uses, so the families stay distinct.
		list = append(list[:len(list):len(list)], h.extra()...)
	}
	for _, mf := range list {
		if filter != nil && !filter[mf.GetName()] {
			continue
		}
		if exp != viaExpfmt {
			var ok bool
			if buf.num, ok = writeFamily(buf.w, mf, exp, buf.num); ok {
				continue
			}
		}
		if err := encoder().Encode(mf); err != nil {
			// Mostly a scraper that went away; what was written cannot be taken back.
			h.logger.Error("error encoding and sending metric family", "family", mf.GetName(), "err", err)
			return
		}
	}
	switch exp {
	case openMetrics:
		buf.w.WriteString("# EOF\n")
	case viaExpfmt:
		if closer, ok := encoder().(expfmt.Closer); ok {
			if err := closer.Close(); err != nil {
				h.logger.Error("error encoding and sending metrics", "err", err)
				return
			}
		}
	}
	if err := buf.w.Flush(); err != nil {
		h.logger.Error("error sending metrics", "err", err)
	}
}

// nameFilter is promhttp's name[] query parameter, kept for whoever used it: only the named
// families are served. nil means all.
func nameFilter(r *http.Request) map[string]bool {
	if r.URL == nil || r.URL.RawQuery == "" {
		return nil
	}
	names := r.URL.Query()["name[]"]
	if len(names) == 0 {
		return nil
	}
	filter := make(map[string]bool, len(names))
	for _, n := range names {
		filter[n] = true
	}
	return filter
}

// negotiate is expfmt.NegotiateIncludingOpenMetrics, remembered by Accept header.
func (h *metricsHandler) negotiate(r *http.Request) expfmt.Format {
	accept := r.Header.Get("Accept")
	h.mu.Lock()
	f, ok := h.formats[accept]
	h.mu.Unlock()
	if ok {
		return f
	}
	f = expfmt.NegotiateIncludingOpenMetrics(r.Header)
	h.mu.Lock()
	if len(h.formats) < maxFormats {
		h.formats[accept] = f
	}
	h.mu.Unlock()
	return f
}
