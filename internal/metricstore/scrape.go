package metricstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/tsdb"
)

// Target is one endpoint to scrape. Its labels (the hub's client, site, host) become target labels
// on every series scraped from it, next to job (the job's name) and instance (the address, unless
// Labels sets instance).
type Target struct {
	Address     string // host:port
	Scheme      string // "http" (default) or "https"
	MetricsPath string // default "/metrics"
	Labels      map[string]string
}

// scraper runs the upstream scrape manager with targets the hub sets, in place of Prometheus's
// service discovery: SetTargets plays the discovery manager's part and sends the manager whole
// target sets.
type scraper struct {
	manager *scrape.Manager
	tsets   chan map[string][]*targetgroup.Group
	done    chan struct{} // closed when the manager's Run returns
	render  func(jobs []string) (*config.Config, error)

	mu      sync.Mutex // serialises SetTargets and stop; guards the fields below
	cfg     *config.Config
	jobs    []string // sorted job names that cfg has scrape configs for
	stopped bool
}

func newScraper(o Options, db *tsdb.DB, render func(jobs []string) (*config.Config, error)) (*scraper, error) {
	m, err := scrape.NewManager(&scrape.Options{
		DiscoveryReloadInterval: model.Duration(o.TargetsReload),
		// The first targets start scraping at once instead of after a reload interval.
		DiscoveryReloadOnStartup: true,
	}, o.Logger.With("component", "scrape manager"), nil, nil, db, o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("metricstore: %w", err)
	}
	s := &scraper{
		manager: m,
		tsets:   make(chan map[string][]*targetgroup.Group),
		done:    make(chan struct{}),
		render:  render,
	}
	if err := s.apply(nil); err != nil {
		m.Stop()
		return nil, err
	}
	go func() {
		defer close(s.done)
		_ = m.Run(s.tsets) // returns only nil, when stopped
	}()
	return s, nil
}

// apply gives the manager one scrape configuration per job. The configuration goes through
// config.Load, the same parser and validation as prometheus.yml, so every default Prometheus
// applies to a scrape config (protocols, limits, name validation) is applied here too.
func (s *scraper) apply(jobs []string) error {
	cfg, err := s.render(jobs)
	if err != nil {
		return err
	}
	if err := s.manager.ApplyConfig(cfg); err != nil {
		return fmt.Errorf("metricstore: %w", err)
	}
	s.cfg, s.jobs = cfg, jobs
	return nil
}

// SetTargets replaces every scrape target: jobs maps a job name to its targets. Jobs that are no
// longer present stop being scraped (their series get staleness markers, as in Prometheus); targets
// that stay keep their scrape loops. The change reaches the scrape loops within
// Options.TargetsReload. An invalid target refuses the whole call and changes nothing.
func (s *Store) SetTargets(ctx context.Context, jobs map[string][]Target) error {
	return s.scraper.setTargets(ctx, jobs)
}

func (s *scraper) setTargets(ctx context.Context, jobs map[string][]Target) error {
	tsets := make(map[string][]*targetgroup.Group, len(jobs))
	for job, targets := range jobs {
		if job == "" || !utf8.ValidString(job) {
			return fmt.Errorf("metricstore: invalid job name %q", job)
		}
		g := &targetgroup.Group{Source: job, Targets: make([]model.LabelSet, 0, len(targets))}
		for i, t := range targets {
			ls, err := t.labelSet()
			if err != nil {
				return fmt.Errorf("metricstore: job %q target %d (%s): %w", job, i, t.Address, err)
			}
			g.Targets = append(g.Targets, ls)
		}
		tsets[job] = []*targetgroup.Group{g}
	}
	names := slices.Sorted(maps.Keys(jobs))

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopped
	}
	if !slices.Equal(names, s.jobs) {
		if err := s.apply(names); err != nil {
			return err
		}
	}
	select {
	case s.tsets <- tsets:
		return nil
	case <-s.done:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t Target) labelSet() (model.LabelSet, error) {
	if _, _, err := net.SplitHostPort(t.Address); err != nil {
		return nil, fmt.Errorf("address must be host:port: %w", err)
	}
	scheme := t.Scheme
	switch scheme {
	case "":
		scheme = "http"
	case "http", "https":
	default:
		return nil, fmt.Errorf("scheme %q is neither http nor https", t.Scheme)
	}
	path := t.MetricsPath
	if path == "" {
		path = "/metrics"
	} else if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("metrics path %q does not start with /", path)
	}
	ls := model.LabelSet{
		model.AddressLabel:     model.LabelValue(t.Address),
		model.SchemeLabel:      model.LabelValue(scheme),
		model.MetricsPathLabel: model.LabelValue(path),
	}
	for k, v := range t.Labels {
		// Plain names keep the labels usable in every PromQL and dashboard tool; "__" names are
		// Prometheus's internal ones and job is the job's name.
		if !model.LegacyValidation.IsValidLabelName(k) || strings.HasPrefix(k, "__") || k == model.JobLabel {
			return nil, fmt.Errorf("invalid target label name %q", k)
		}
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("target label %q: value is not valid UTF-8", k)
		}
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls, nil
}

func (s *scraper) currentConfig() config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.cfg
}

var errStopped = errors.New("metricstore: store is closed")

func (s *scraper) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.manager.Stop()
	<-s.done
}

// TargetStatus is the last scrape of one target, for showing a host as up or down with the reason.
type TargetStatus struct {
	Job        string
	Labels     map[string]string // target labels after relabelling: job, instance and the Target's labels
	URL        string
	Health     string // "up", "down" or "unknown" (not scraped yet)
	LastError  string
	LastScrape time.Time
	Duration   time.Duration
}

// Targets reports every active target's last scrape, sorted by job and URL.
func (s *Store) Targets() []TargetStatus {
	var out []TargetStatus
	for job, ts := range s.scraper.manager.TargetsActive() {
		for _, t := range ts {
			st := TargetStatus{
				Job:        job,
				Labels:     t.Labels(labels.NewBuilder(labels.EmptyLabels())).Map(),
				URL:        t.URL().String(),
				Health:     string(t.Health()),
				LastScrape: t.LastScrape(),
				Duration:   t.LastScrapeDuration(),
			}
			if err := t.LastError(); err != nil {
				st.LastError = err.Error()
			}
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b TargetStatus) int {
		return strings.Compare(a.Job+"\x00"+a.URL, b.Job+"\x00"+b.URL)
	})
	return out
}
