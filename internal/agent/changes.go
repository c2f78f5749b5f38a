package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/fim"
)

// The change monitor's defaults. A daily snapshot is what the seed asks for; the package database
// is looked at every minute so that an upgrade shows on the timeline within a minute, not a day,
// and its file changes are grouped under it. The first file-integrity baseline waits a minute
// after start so that an agent (re)starting with its host does not hash /usr/bin while the host
// boots.
const (
	DefaultChangesInterval = 24 * time.Hour
	DefaultPackageCheck    = time.Minute
	DefaultShipInterval    = 30 * time.Second
	DefaultFIMStartDelay   = time.Minute
	DefaultFIMScanInterval = time.Hour
	shipBatch              = 1000
)

// DefaultFIMTrees are watched when the configuration names none: the configuration and the
// binaries an intruder replaces. Excluded: what changes by itself in normal operation.
var DefaultFIMTrees = []FIMTree{
	{Path: "/etc", Exclude: []string{"/etc/mtab", "/etc/.git", "/etc/ld.so.cache", "/etc/adjtime", "*.swp", "*~", "*.dpkg-tmp"}},
	{Path: "/usr/bin"}, {Path: "/usr/sbin"}, {Path: "/usr/local/bin"}, {Path: "/usr/local/sbin"},
	{Path: "/boot"},
}

// ChangesConfig is the agent configuration's `changes:` section: the change monitor's snapshots,
// file integrity, journal and shipping to the hub.
type ChangesConfig struct {
	Enabled *bool `yaml:"enabled"` // nil: on
	// Interval is the time between full snapshots (default 24 h).
	Interval time.Duration `yaml:"interval"`
	// PackageCheck is how often the package database's modification time is checked; a change
	// takes a snapshot at once (default 1 min; negative: never).
	PackageCheck time.Duration `yaml:"package_check"`
	// Kinds limits the snapshot's sources (default: all).
	Kinds []string `yaml:"kinds"`
	// ConfigFiles are the configuration files to watch (paths and globs); empty: the defaults.
	ConfigFiles []string `yaml:"config_files"`
	// Redact are regular expressions applied to configuration file lines before anything is
	// stored (see changes.Config.Redact); empty: the defaults.
	Redact []string `yaml:"redact"`
	// MaxTextBytes caps the size of a text file whose diff is kept (default 64 KiB).
	MaxTextBytes int64 `yaml:"max_text_bytes"`
	// JournalMaxBytes bounds the journal on disk (default 64 MiB).
	JournalMaxBytes int64 `yaml:"journal_max_bytes"`
	// ShipInterval is how often unshipped events go to the hub when enrolled (default 30 s).
	ShipInterval time.Duration `yaml:"ship_interval"`
	// PackageGrace is how long file changes made by a package transaction are held to be grouped
	// under its package event (default 10 s after the last one).
	PackageGrace time.Duration `yaml:"package_grace"`

	FIM FIMConfig `yaml:"fim"`
}

// FIMConfig is `changes.fim:`, file integrity.
type FIMConfig struct {
	Enabled *bool     `yaml:"enabled"` // nil: on
	Trees   []FIMTree `yaml:"trees"`   // empty: DefaultFIMTrees
	// Watch turns real-time watching (inotify) on; nil: on.
	Watch *bool `yaml:"watch"`
	// ScanInterval is the time between verification scans (default 1 h).
	ScanInterval time.Duration `yaml:"scan_interval"`
	// StartDelay postpones the first scan after the agent starts (default 1 min).
	StartDelay *time.Duration `yaml:"start_delay"`
	// Paranoid re-hashes every file once per FullRehashInterval (default 24 h) whatever stat says.
	Paranoid           bool          `yaml:"paranoid"`
	FullRehashInterval time.Duration `yaml:"full_rehash_interval"`
	MaxWatches         int           `yaml:"max_watches"`
	HashWorkers        int           `yaml:"hash_workers"`
}

// FIMTree is one watched tree.
type FIMTree struct {
	Path    string   `yaml:"path"`
	Exclude []string `yaml:"exclude"`
}

func (c *ChangesConfig) on() bool   { return c.Enabled == nil || *c.Enabled }
func (c *FIMConfig) on() bool       { return c.Enabled == nil || *c.Enabled }
func (c *FIMConfig) watching() bool { return c.Watch == nil || *c.Watch }
func (c *FIMConfig) trees() []FIMTree {
	if len(c.Trees) == 0 {
		return DefaultFIMTrees
	}
	return c.Trees
}

// Validate checks the section; path is its field path ("changes").
func (c *ChangesConfig) Validate(path string) []config.FieldError {
	var errs []config.FieldError
	neg := func(field string, d time.Duration) {
		if d < 0 {
			errs = append(errs, config.Errorf(path+"."+field, "must not be negative"))
		}
	}
	neg("interval", c.Interval)
	neg("ship_interval", c.ShipInterval)
	neg("package_grace", c.PackageGrace)
	neg("fim.scan_interval", c.FIM.ScanInterval)
	neg("fim.full_rehash_interval", c.FIM.FullRehashInterval)
	if c.FIM.StartDelay != nil {
		neg("fim.start_delay", *c.FIM.StartDelay)
	}
	if c.Interval > 0 && c.Interval < time.Minute {
		errs = append(errs, config.Errorf(path+".interval", "%s is too short for a full snapshot; at least 1m", c.Interval))
	}
	if c.JournalMaxBytes < 0 || (c.JournalMaxBytes > 0 && c.JournalMaxBytes < 64<<10) {
		errs = append(errs, config.Errorf(path+".journal_max_bytes", "must be at least 65536"))
	}
	if c.MaxTextBytes < 0 {
		errs = append(errs, config.Errorf(path+".max_text_bytes", "must not be negative"))
	}
	known := changes.Kinds()
	for i, k := range c.Kinds {
		if !slices.Contains(known, k) {
			errs = append(errs, config.Errorf(fmt.Sprintf("%s.kinds[%d]", path, i), "unknown kind %q; known: %v", k, known))
		}
	}
	for i, r := range c.Redact {
		if _, err := regexp.Compile(r); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("%s.redact[%d]", path, i), "%v", err))
		}
	}
	for i, p := range c.ConfigFiles {
		if !filepath.IsAbs(p) {
			errs = append(errs, config.Errorf(fmt.Sprintf("%s.config_files[%d]", path, i), "%q is not an absolute path", p))
		} else if _, err := filepath.Match(p, ""); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("%s.config_files[%d]", path, i), "%v", err))
		}
	}
	if c.FIM.MaxWatches < 0 || c.FIM.HashWorkers < 0 {
		errs = append(errs, config.Errorf(path+".fim", "max_watches and hash_workers must not be negative"))
	}
	if len(c.FIM.Trees) > 0 {
		fc := fim.Config{StateDir: os.TempDir()}
		for _, t := range c.FIM.Trees {
			fc.Trees = append(fc.Trees, fim.Tree{Path: t.Path, Exclude: t.Exclude})
		}
		if err := fc.Validate(); err != nil {
			// fim's errors are lines of "trees[1].exclude[0]: why": under this section's path they
			// are field paths that the configuration loader turns into lines of the file.
			for _, line := range strings.Split(err.Error(), "\n") {
				field, why, ok := strings.Cut(line, ": ")
				if !ok {
					field, why = "trees", line
				}
				errs = append(errs, config.Errorf(path+".fim."+field, "%s", why))
			}
		}
	}
	return errs
}

// ShipFunc sends events of the journal named journal to the hub and returns the highest sequence
// number the hub now holds.
type ShipFunc func(ctx context.Context, journal string, events []changes.Event) (uint64, error)

// changeMonitor is the agent's change monitor: snapshots on a schedule and when the package
// database changes, file integrity, the journal, and shipping it to the hub.
type changeMonitor struct {
	cfg      ChangesConfig
	srcCfg   changes.Config
	dir      string
	log      *slog.Logger
	ship     ShipFunc
	journal  *changes.Journal
	metrics  changes.Metrics
	fim      *fim.Monitor
	group    *changes.Grouper
	snapNow  chan struct{}
	shipNow  chan struct{}
	runMu    sync.Mutex // one snapshot at a time
	shipped  atomic.Int64
	shipErrs atomic.Uint64
	wg       sync.WaitGroup
	cancel   context.CancelFunc
	openErr  error // the journal could not be opened: reported as a metric, the agent goes on
}

func newChangeMonitor(cfg ChangesConfig, opts Options, ship ShipFunc, log *slog.Logger) *changeMonitor {
	c := &changeMonitor{
		cfg: cfg, dir: filepath.Join(opts.StateDir, "changes"), log: log, ship: ship,
		snapNow: make(chan struct{}, 1), shipNow: make(chan struct{}, 1),
	}
	c.srcCfg = changes.Config{
		RootPath: opts.RootPath, ProcPath: opts.ProcPath, SysPath: opts.SysPath,
		ConfigFiles: cfg.ConfigFiles, Redact: cfg.Redact, MaxTextBytes: cfg.MaxTextBytes, Kinds: cfg.Kinds,
	}
	return c
}

func (c *changeMonitor) start(ctx context.Context) {
	ctx, c.cancel = context.WithCancel(ctx)
	j, err := changes.OpenJournal(filepath.Join(c.dir, "journal"), changes.JournalOptions{MaxBytes: c.cfg.JournalMaxBytes})
	if err != nil {
		c.openErr = err
		c.log.Error("change monitor: cannot open its journal; changes are not recorded until the agent restarts", "err", err)
		return
	}
	c.journal = j
	var prefixes []string
	for _, t := range c.cfg.FIM.trees() {
		prefixes = append(prefixes, t.Path)
	}
	c.group = changes.NewGrouper(changes.GrouperOptions{
		Config: c.srcCfg, Append: c.appendEvents, Grace: c.cfg.PackageGrace, Logger: c.log,
		Prefixes: prefixes, // the package index holds only what file integrity can report
	})
	c.wg.Add(2)
	go c.snapshots(ctx)
	go c.shipping(ctx)
	if c.cfg.FIM.on() {
		if err := c.startFIM(ctx); err != nil {
			c.log.Error("file integrity: not started", "err", err)
		}
	}
}

func (c *changeMonitor) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	c.wg.Wait()
	if c.group != nil {
		c.group.Close()
	}
	if c.journal != nil {
		_ = c.journal.Close()
	}
}

func (c *changeMonitor) startFIM(ctx context.Context) error {
	fc := fim.Config{
		StateDir: filepath.Join(c.dir, "fim"), ScanInterval: c.cfg.FIM.ScanInterval, Watch: c.cfg.FIM.watching(),
		Paranoid: c.cfg.FIM.Paranoid, FullRehashInterval: c.cfg.FIM.FullRehashInterval,
		MaxWatches: c.cfg.FIM.MaxWatches, HashWorkers: c.cfg.FIM.HashWorkers,
	}
	if fc.ScanInterval == 0 {
		fc.ScanInterval = DefaultFIMScanInterval
	}
	if fc.HashWorkers == 0 {
		fc.HashWorkers = 2 // the agent's own work must not starve the host's
	}
	for _, t := range c.cfg.FIM.trees() {
		p := t.Path
		if c.srcCfg.RootPath != "" {
			p = filepath.Join(c.srcCfg.RootPath, p)
		}
		if _, err := os.Lstat(p); err != nil {
			continue // /usr/local/sbin and /boot are not everywhere; a configured tree that appears later waits for a restart
		}
		fc.Trees = append(fc.Trees, fim.Tree{Path: p, Exclude: t.Exclude})
	}
	if len(fc.Trees) == 0 {
		return errors.New("none of the configured trees exists")
	}
	m, err := fim.New(fc, c.group, c.log.With("part", "fim"))
	if err != nil {
		return err
	}
	c.fim = m
	delay := DefaultFIMStartDelay
	if c.cfg.FIM.StartDelay != nil {
		delay = *c.cfg.FIM.StartDelay
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		if err := m.Run(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("file integrity stopped", "err", err)
		}
	}()
	return nil
}

// appendEvents is where every event enters the journal: snapshot diffs, file integrity (through
// the grouper). A failure (disk full) is counted and logged; the caller keeps what it could not
// write (the snapshot stays the previous one, the FIM baseline is not replaced).
func (c *changeMonitor) appendEvents(evs []changes.Event) error {
	if len(evs) == 0 {
		return nil
	}
	host := c.srcCfg.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	for i := range evs {
		if evs[i].Host == "" {
			evs[i].Host = host
		}
	}
	if err := c.journal.Append(evs); err != nil {
		c.metrics.AddJournalError()
		c.log.Error("change journal: append failed; the changes will be found again", "err", err, "events", len(evs))
		return err
	}
	c.metrics.Count(evs)
	c.kickShip()
	return nil
}

func (c *changeMonitor) kickShip() {
	select {
	case c.shipNow <- struct{}{}:
	default:
	}
}

// snapshots takes one at start when the last is older than the interval (or there is none), then
// every interval, and whenever the package database changes.
func (c *changeMonitor) snapshots(ctx context.Context) {
	defer c.wg.Done()
	interval := durationOr(c.cfg.Interval, DefaultChangesInterval)
	check := durationOr(c.cfg.PackageCheck, DefaultPackageCheck)
	next := time.Now()
	if prev, err := changes.LoadSnapshot(c.dir); err == nil && prev != nil {
		next = prev.Time.Add(interval)
	}
	pkgStamp := c.packageStamp()
	var tick <-chan time.Time
	if check > 0 {
		t := time.NewTicker(check)
		defer t.Stop()
		tick = t.C
	}
	for {
		wait := time.Until(next)
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-c.snapNow:
			timer.Stop()
		case <-tick:
			timer.Stop()
			s := c.packageStamp()
			if s == pkgStamp {
				continue
			}
			pkgStamp = s
		}
		c.snapshot(ctx)
		next = time.Now().Add(interval)
	}
}

func (c *changeMonitor) snapshot(ctx context.Context) {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	res, err := changes.Run(ctx, c.srcCfg, c.dir, c.journal, &c.metrics, c.log)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error("change snapshot failed", "err", err)
		}
		return
	}
	if len(res.Events) > 0 {
		c.group.PackagesChanged(res.Events)
		c.kickShip()
	}
	c.log.Debug("change snapshot taken", "events", len(res.Events), "objects", res.Snapshot.Objects(), "first", res.First)
}

// packageStamp is the package databases' modification times: it changes when a package
// transaction finishes.
func (c *changeMonitor) packageStamp() string {
	s := ""
	for _, p := range []string{"/var/lib/dpkg/status", "/var/lib/rpm/rpmdb.sqlite", "/var/lib/rpm/Packages", "/usr/lib/sysimage/rpm/rpmdb.sqlite"} {
		if c.srcCfg.RootPath != "" {
			p = filepath.Join(c.srcCfg.RootPath, p)
		}
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil {
			s += fmt.Sprintf("%s:%d.%d:%d;", p, st.Mtim.Sec, st.Mtim.Nsec, st.Size)
		}
	}
	return s
}

// shipping sends unacknowledged events to the hub, in batches, after appends and every
// ShipInterval; a hub that is away is tried again at the next tick, the journal keeping them.
func (c *changeMonitor) shipping(ctx context.Context) {
	defer c.wg.Done()
	if c.ship == nil {
		return
	}
	t := time.NewTicker(durationOr(c.cfg.ShipInterval, DefaultShipInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.shipNow:
		}
		for ctx.Err() == nil {
			n, err := c.shipOnce(ctx)
			if err != nil {
				c.shipErrs.Add(1)
				if ctx.Err() == nil {
					c.log.Warn("change events: shipping to the hub failed; they stay in the journal", "err", err)
				}
				break
			}
			if n < shipBatch {
				break
			}
		}
	}
}

func (c *changeMonitor) shipOnce(ctx context.Context) (int, error) {
	var batch []changes.Event
	if err := c.journal.Pending(func(e changes.Event) bool {
		batch = append(batch, e)
		return len(batch) < shipBatch
	}); err != nil {
		return 0, err
	}
	if len(batch) == 0 {
		return 0, nil
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	acked, err := c.ship(sctx, c.journal.ID(), batch)
	if err != nil {
		return 0, err
	}
	if err := c.journal.Acknowledge(acked); err != nil {
		return 0, err
	}
	c.shipped.Store(time.Now().UnixNano())
	return len(batch), nil
}

// durationOr is d, or def when d is unset.
func durationOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// families are the change monitor's metrics.
func (c *changeMonitor) families() []*dto.MetricFamily {
	var b famBuilder
	m := c.metrics.Copy()
	b.gauge("sage_changes_up", "1 when the change monitor's journal is open and changes are recorded.", btof(c.journal != nil && c.openErr == nil))
	for _, kind := range changes.Kinds() {
		b.counter("sage_changes_total", "Change events recorded in the journal, by kind.", float64(m.Changes[kind]), "kind", kind)
	}
	b.counter("sage_changes_total", "Change events recorded in the journal, by kind.", float64(m.Changes[changes.KindFiles]), "kind", changes.KindFiles)
	for _, kind := range slices.Sorted(maps.Keys(m.SourceErrors)) {
		b.counter("sage_changes_source_errors_total", "Snapshot sources that could not be read, by kind.", float64(m.SourceErrors[kind]), "kind", kind)
	}
	if !m.LastSnapshot.IsZero() {
		b.gauge("sage_changes_last_snapshot_timestamp_seconds", "When the last snapshot was taken and its changes journaled.", float64(m.LastSnapshot.UnixNano())/1e9)
	}
	if c.journal != nil {
		st := c.journal.Stats()
		b.gauge("sage_changes_journal_bytes", "Size of the change journal on disk.", float64(st.Bytes))
		b.gauge("sage_changes_journal_pending_events", "Journaled events the hub has not acknowledged.", float64(st.LastSeq-st.Acked))
		b.counter("sage_changes_journal_dropped_events_total", "Events dropped unshipped because the journal reached its size bound.", float64(st.Dropped))
	}
	b.counter("sage_changes_journal_write_errors_total", "Failed journal appends (disk full): the changes are found again by the next snapshot or scan.", float64(m.JournalErrors))
	if c.group != nil {
		b.counter("sage_changes_tampered_files_total", "Files a package owns whose content differs from the package's checksum with no package transaction to explain it.", float64(c.group.Tampered()))
		b.counter("sage_changes_grouped_files_total", "File changes explained by a package transaction and grouped under its package event.", float64(c.group.Grouped()))
	}
	if c.ship != nil {
		b.counter("sage_changes_ship_errors_total", "Failed attempts to ship change events to the hub.", float64(c.shipErrs.Load()))
		if t := c.shipped.Load(); t > 0 {
			b.gauge("sage_changes_last_ship_timestamp_seconds", "When change events last reached the hub.", float64(t)/1e9)
		}
	}
	if c.fim != nil {
		fm := c.fim.Metrics()
		b.gauge("sage_fim_files", "Entries in the file-integrity baselines.", float64(fm.FilesWatched))
		b.gauge("sage_fim_watched_directories", "Directories watched in real time (inotify).", float64(fm.DirsWatched))
		b.gauge("sage_fim_watch_limit_reached", "1 when some directories are covered by verification scans only (the watch limit was reached).", btof(fm.WatchLimitReached))
		if !fm.LastScan.IsZero() {
			b.gauge("sage_fim_last_scan_timestamp_seconds", "When the last verification scan started.", float64(fm.LastScan.UnixNano())/1e9)
			b.gauge("sage_fim_last_scan_duration_seconds", "How long the last verification scan took.", fm.LastScanDuration.Seconds())
		}
		b.counter("sage_fim_scans_total", "Verification scans run.", float64(fm.Scans))
		b.counter("sage_fim_scan_errors_total", "Paths a scan or live check could not examine (permission denied, vanished).", float64(fm.ScanErrors))
		b.counter("sage_fim_files_hashed_total", "Files hashed by scans and live checks.", float64(fm.Hashed))
		for _, k := range []fim.Kind{fim.Created, fim.Deleted, fim.ContentChanged, fim.AttributesChanged} {
			b.counter("sage_fim_events_total", "File-integrity events, by kind, before package grouping.", float64(fm.Events[k]), "kind", string(k))
		}
	}
	return b.list()
}

func btof(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// famBuilder collects samples into families in the order first seen.
type famBuilder struct {
	fams  []*dto.MetricFamily
	index map[string]*dto.MetricFamily
}

func (b *famBuilder) add(name, help string, typ dto.MetricType, m *dto.Metric, labels []string) {
	if b.index == nil {
		b.index = map[string]*dto.MetricFamily{}
	}
	for i := 0; i+1 < len(labels); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: &labels[i], Value: &labels[i+1]})
	}
	f := b.index[name]
	if f == nil {
		f = &dto.MetricFamily{Name: &name, Help: &help, Type: &typ}
		b.index[name] = f
		b.fams = append(b.fams, f)
	}
	f.Metric = append(f.Metric, m)
}

func (b *famBuilder) gauge(name, help string, v float64, labels ...string) {
	b.add(name, help, dto.MetricType_GAUGE, &dto.Metric{Gauge: &dto.Gauge{Value: &v}}, labels)
}

func (b *famBuilder) counter(name, help string, v float64, labels ...string) {
	b.add(name, help, dto.MetricType_COUNTER, &dto.Metric{Counter: &dto.Counter{Value: &v}}, labels)
}

func (b *famBuilder) list() []*dto.MetricFamily { return b.fams }
