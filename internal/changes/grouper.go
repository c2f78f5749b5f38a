package changes

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/serversage/sage/internal/fim"
)

// Grouper sits between the file-integrity monitor and the journal, so that a package upgrade is one
// event and not a flood of hundreds of file events, while a packaged file changed behind the
// package manager's back stands out. It is a fim.Sink; each file event is sorted out as follows,
// using the PackageIndex (who owns the path, with what checksum) and dpkg.log (when each package's
// latest transaction ran):
//
//   - A path owned by a package, changed inside that package's transaction window (widened by
//     Slack), or whose new content is exactly what the package recorded: held, and grouped with the
//     package's other held files into ONE event: kind "files", object "package <name:arch>",
//     action added/changed/removed for install/upgrade/remove, Before/After "version" (dpkg.log),
//     After "package", "transaction" (the dpkg verb), "files_changed" (the count) and Files (the
//     paths, at most MaxGroupedFiles). A group leaves Grace after its package's last file, once
//     dpkg has finished with the package (or MaxHold after its first file).
//   - A regular file owned by a package, its content changed, its checksum not the recorded one,
//     and no transaction of its package explaining it: a "files" event on the path with Tampered
//     set and After "package", "expected_md5", "actual_md5" ("…_sha256", first 128 bits, for
//     rpm's SHA-256 digests). Counted by Tampered, logged at warning level.
//   - Everything else, plainly (FromFIM): unowned paths, owned files deleted or chmod-ed outside
//     a transaction, conffiles edited by the administrator (configuration, not tampering).
//
// Why kind "files" and not "packages" for the group: the snapshot's packages source already
// journals the version change ("packages: openssl:amd64 upgraded from 3.0.1 to 3.0.2") within a
// minute of the package database changing, and it does so whatever the grouper does. A second
// "packages" event would tell the upgrade twice, in an order that depends on timers; a "files"
// event reads as what it is, the file-integrity side of that upgrade ("files: package
// openssl:amd64 changed, 57 files"), never duplicates the inventory event, and needs no
// coordination between the two. Its object cannot collide with a file's: paths start with "/".
//
// Classification waits Settle after an event arrived, and while dpkg is busy (an open window in
// dpkg.log, up to MaxHold), because dpkg writes a package's new file list and checksums only
// after it has unpacked the files: deciding earlier would call an upgrade's new files unowned.
// rpm has no such log here: an rpm upgrade's files are grouped by their new checksums.
//
// Limits: a change the monitor finds only at a later verification scan (past the inotify watch
// limit, after an event overflow) is judged by the scan's time or the file's ctime; a deletion has
// no ctime, so an upgrade's removed files found that way are reported one by one. A group of more
// than MaxGroupedFiles paths lists the first ones (sorted) and counts them all.
type Grouper struct {
	opts  GrouperOptions
	idx   *PackageIndex
	dlog  *DpkgLog
	root  string
	log   *slog.Logger
	now   func() time.Time
	procM sync.Mutex // one process at a time

	loopOnce sync.Once
	stop     context.CancelFunc
	loopDone chan struct{}

	mu       sync.Mutex
	pending  []heldEvent
	groups   map[string]*pkgGroup
	outQ     []Event
	snapshot map[string]reportedPkg // what snapshots journalled, from PackagesChanged

	tampered, grouped, plain, pkgEvents, dropped, outErrors atomic.Uint64
}

// GrouperOptions configure a Grouper; zero values take the defaults.
type GrouperOptions struct {
	// Append journals events (a Journal's Append, or the agent's wrapper around it). An error
	// keeps the events queued for the next round.
	Append func([]Event) error
	// Config gives RootPath (where the package database and the files are: fixture trees in
	// tests; the events' paths keep it, the package database's do not) and Host.
	Config Config
	// Prefixes limit the package index to the paths under them: the file monitor's trees.
	Prefixes []string
	// DpkgLog is dpkg's log (default RootPath + /var/log/dpkg.log); Location its time zone
	// (default time.Local: dpkg logs local time).
	DpkgLog  string
	Location *time.Location
	// Grace is how long after a package's last file its group is journalled (default 10 s).
	Grace time.Duration
	// Settle is how long an event waits before it is classified (default 300 ms), MaxHold the most
	// it waits for dpkg to finish (default 5 min).
	Settle, MaxHold time.Duration
	// Slack widens transaction windows on both sides (default 5 s): dpkg.log has whole seconds
	// and the file monitor reports a change after its debounce.
	Slack time.Duration
	// OpenLimit bounds an unfinished transaction (dpkg killed mid-upgrade): its window does not
	// explain changes more than OpenLimit after its last log line (default 30 min).
	OpenLimit time.Duration
	// MaxPending bounds the events waiting; past it Emit classifies at once (default 100000).
	MaxPending int
	Logger     *slog.Logger
}

type heldEvent struct {
	ev   fim.Event
	seen time.Time
}

type pkgGroup struct {
	key    string
	win    Window
	hasWin bool
	paths  map[string]struct{}
	first  time.Time // arrival of the first event (MaxHold)
	last   time.Time // arrival of the latest (Quiet)
	evTime time.Time // the earliest change: the event's time
}

type reportedPkg struct {
	action, from, to string
	at               time.Time
}

// GrouperStats are the Grouper's figures since it started.
type GrouperStats struct {
	// Tampered counts files changed against their package's checksum outside any transaction:
	// sage_changes_tampered_files_total.
	Tampered uint64
	// Grouped counts file events absorbed into package events, PackageEvents those events.
	Grouped, PackageEvents uint64
	// Plain counts file events journalled one by one (FromFIM), Tampered included.
	Plain uint64
	// Held is what waits now: events not yet classified and files in open groups.
	Held int
	// OutErrors counts failed journal appends (retried), Dropped the events given up on when the
	// retry queue overflowed.
	OutErrors, Dropped uint64
}

// NewGrouper returns a Grouper journalling through opts.Append. It reads the package database in
// the background at once (the files an upgrade removes are attributed to their package only if
// the index knew them before), and starts its timers with the first event; Close stops them.
func NewGrouper(opts GrouperOptions) *Grouper {
	if opts.Grace <= 0 {
		opts.Grace = 10 * time.Second
	}
	if opts.Settle <= 0 {
		// dpkg logs a package's transaction before it unpacks the files, so an event that finds no
		// transaction open after this long belongs to none: short enough that an ordinary file
		// change reaches the journal within a second of the write (with the monitor's 100 ms
		// debounce and the journal's fsync).
		opts.Settle = 300 * time.Millisecond
	}
	if opts.MaxHold <= 0 {
		opts.MaxHold = 5 * time.Minute
	}
	if opts.Slack <= 0 {
		opts.Slack = 5 * time.Second
	}
	if opts.OpenLimit <= 0 {
		opts.OpenLimit = 30 * time.Minute
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Append == nil {
		opts.Append = func([]Event) error { return nil }
	}
	if opts.Config.Host == "" {
		opts.Config.Host, _ = os.Hostname()
	}
	root := ""
	if opts.Config.RootPath != "" {
		root = filepath.Clean(opts.Config.RootPath)
	}
	g := &Grouper{
		opts: opts, root: root, log: opts.Logger, now: time.Now,
		idx:      NewPackageIndex(opts.Config, opts.Prefixes),
		dlog:     NewDpkgLog(opts.Config, opts.DpkgLog, opts.Location),
		groups:   map[string]*pkgGroup{},
		snapshot: map[string]reportedPkg{},
	}
	go func() {
		if err := g.Refresh(context.Background()); err != nil {
			g.log.Warn("change grouper: package database", "err", err)
		}
	}()
	return g
}

// Index is the package index the Grouper uses.
func (g *Grouper) Index() *PackageIndex { return g.idx }

// Emit takes a file-integrity event; it only queues it (the monitor must not wait on hashing),
// unless MaxPending events already wait.
func (g *Grouper) Emit(ev fim.Event) error {
	g.loopOnce.Do(g.startLoop)
	g.mu.Lock()
	g.pending = append(g.pending, heldEvent{ev: ev, seen: g.now()})
	n := len(g.pending)
	g.mu.Unlock()
	if n >= g.opts.MaxPending {
		g.process(context.Background(), true)
	}
	return nil
}

// Refresh reads the package database and dpkg.log now. Run does it at start; it matters before the
// first change, so that the files an upgrade removes are still known with their owner.
func (g *Grouper) Refresh(ctx context.Context) error {
	_, err := g.idx.Refresh(ctx)
	return joinErr(err, g.dlog.Refresh())
}

func joinErr(a, b error) error {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return fmt.Errorf("%w; %w", a, b)
}

// startLoop runs the timers that classify settled events and journal quiet groups.
func (g *Grouper) startLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	g.stop, g.loopDone = cancel, make(chan struct{})
	every := min(g.opts.Settle, g.opts.Grace) / 4
	every = min(max(every, 10*time.Millisecond), time.Second)
	go func() {
		defer close(g.loopDone)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = g.process(ctx, false)
			}
		}
	}()
}

// Flush classifies everything waiting and journals every group now (shutdown, tests).
func (g *Grouper) Flush(ctx context.Context) error {
	return g.process(ctx, true)
}

// Close stops the timers and flushes what is held; call it once the file monitor has stopped.
func (g *Grouper) Close() error {
	g.loopOnce.Do(func() {}) // no loop may start after this
	if g.stop != nil {
		g.stop()
		<-g.loopDone
	}
	return g.Flush(context.Background())
}

// Tampered is the count for sage_changes_tampered_files_total.
func (g *Grouper) Tampered() uint64 { return g.tampered.Load() }

// Grouped counts the file events absorbed into package groups.
func (g *Grouper) Grouped() uint64 { return g.grouped.Load() }

// Stats returns the Grouper's figures.
func (g *Grouper) Stats() GrouperStats {
	g.mu.Lock()
	held := len(g.pending)
	for _, gr := range g.groups {
		held += len(gr.paths)
	}
	g.mu.Unlock()
	return GrouperStats{Tampered: g.tampered.Load(), Grouped: g.grouped.Load(), PackageEvents: g.pkgEvents.Load(),
		Plain: g.plain.Load(), Held: held, OutErrors: g.outErrors.Load(), Dropped: g.dropped.Load()}
}

// PackagesChanged takes a snapshot's journalled events: the versions of a package event name the
// transaction of a group that dpkg.log cannot explain (rpm hosts), when the snapshot comes first.
func (g *Grouper) PackagesChanged(evs []Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	for k, r := range g.snapshot {
		if now.Sub(r.at) > g.opts.MaxHold {
			delete(g.snapshot, k)
		}
	}
	for _, e := range evs {
		if e.Kind == "packages" {
			g.snapshot[e.Object] = reportedPkg{action: e.Action, from: e.Before["version"], to: e.After["version"], at: now}
		}
	}
}

// process does one round: classify what has settled, journal the groups that are quiet and what
// is plain. With force, everything goes now.
func (g *Grouper) process(ctx context.Context, force bool) error {
	g.procM.Lock()
	defer g.procM.Unlock()
	now := g.now()
	if err := g.dlog.Refresh(); err != nil {
		g.log.Warn("change grouper: dpkg log", "err", err)
	}
	// While dpkg is mid-transaction its file lists are not written yet, and the package database
	// changes by the second: classifying (and rebuilding the index, half a second of CPU) waits,
	// except for what has waited MaxHold.
	wait := g.opts.Settle
	if !force && g.dlog.Busy(now, g.opts.OpenLimit) {
		wait = max(wait, g.opts.MaxHold)
	}
	g.mu.Lock()
	ready := 0
	for _, h := range g.pending {
		if !force && now.Sub(h.seen) < wait {
			break
		}
		ready++
	}
	g.mu.Unlock()
	if ready > 0 {
		if _, err := g.idx.Refresh(ctx); err != nil {
			g.log.Warn("change grouper: package database", "err", err)
		}
	}
	g.mu.Lock()
	batch := slices.Clone(g.pending[:ready])
	g.pending = slices.Clone(g.pending[ready:])
	g.mu.Unlock()

	var out []Event
	for _, h := range batch {
		if e, ok := g.classify(h, now); ok {
			out = append(out, e)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, key := range slices.Sorted(maps.Keys(g.groups)) {
		gr := g.groups[key]
		if !force && now.Sub(gr.last) < g.opts.Grace {
			continue
		}
		w, hasW := g.dlog.Window(key)
		if !force && hasW && w.Open && now.Sub(w.End) < g.opts.OpenLimit && now.Sub(gr.first) < g.opts.MaxHold {
			continue // dpkg is still on it: more files may come
		}
		delete(g.groups, key)
		if len(gr.paths) == 0 {
			continue // only dpkg's temporary files
		}
		if gr.hasWin && hasW && w.Start.Equal(gr.win.Start) {
			gr.win = w // the versions and end as the transaction finished
		}
		e := g.groupEvent(gr)
		out = append(out, e)
		g.pkgEvents.Add(1)
	}
	if len(out) == 0 && len(g.outQ) == 0 {
		return nil
	}
	g.outQ = append(g.outQ, out...)
	if over := len(g.outQ) - g.opts.MaxPending; over > 0 {
		g.dropped.Add(uint64(over))
		g.outQ = slices.Clone(g.outQ[over:])
	}
	if err := g.opts.Append(g.outQ); err != nil {
		g.outErrors.Add(1)
		g.log.Error("change grouper: journal append failed; retrying", "err", err, "events", len(g.outQ))
		return fmt.Errorf("change grouper: %w", err)
	}
	g.outQ = nil
	return nil
}

// dpkgTemp are the names dpkg gives a packaged file while it works on it. The first two are
// transient (not listed in a group), the others stay behind as the administrator's to sort out.
var dpkgTemp = []struct {
	suffix    string
	transient bool
}{{".dpkg-new", true}, {".dpkg-tmp", true}, {".dpkg-old", false}, {".dpkg-dist", false}, {".dpkg-bak", false}}

// classify sorts one event out: grouped (false), or an event to journal now.
func (g *Grouper) classify(h heldEvent, now time.Time) (Event, bool) {
	ev := h.ev
	p := ev.Path
	if g.root != "" {
		rel, ok := strings.CutPrefix(p, g.root)
		if ok && (rel == "" || rel[0] == '/') {
			p = path.Clean("/" + rel)
		}
	}
	lookup, transient := p, false
	for _, t := range dpkgTemp {
		if strings.HasSuffix(p, t.suffix) {
			lookup, transient = strings.TrimSuffix(p, t.suffix), t.transient
			break
		}
	}
	own, owned := g.idx.Lookup(lookup)
	if !owned {
		return g.plainEvent(ev), true
	}
	// When it happened: the monitor's time is when it saw the change (after its debounce, or at a
	// later scan); the inode's ctime is when the file was last written, renamed or chmod-ed, and
	// cannot be set back without setting the clock back. Either in the window explains.
	times := []time.Time{ev.Time}
	if ev.New != nil && ev.New.Ctime != 0 {
		times = append(times, time.Unix(0, ev.New.Ctime))
	}
	w, hasW := g.dlog.Window(own.Package)
	inWin := false
	for _, t := range times {
		inWin = inWin || (hasW && w.Contains(t, now, g.opts.Slack, g.opts.OpenLimit))
	}
	if !inWin && own.Shared {
		// A directory several packages list: any of them working on it at the time explains it.
		for _, cw := range g.dlog.Covering(ev.Time, now, g.opts.Slack, g.opts.OpenLimit) {
			w, inWin, own.Package = cw, true, cw.Package
			break
		}
	}
	if inWin {
		g.hold(own.Package, &w, h, transient)
		return Event{}, false
	}
	content := ev.Kind == fim.Created || ev.Kind == fim.ContentChanged
	if lookup != p || !content || own.Conffile || own.Digest == "" || ev.New == nil || ev.New.Type != fim.TypeFile {
		return g.plainEvent(ev), true
	}
	var actual []byte
	if own.Digest == "sha256" && ev.New.HasHash {
		actual = ev.New.SHA256[:]
	} else {
		sum, err := fileDigest(ev.Path, own.Digest)
		if err != nil {
			return g.plainEvent(ev), true // gone or unreadable: the monitor reports what follows
		}
		actual = sum
	}
	if own.Matches(actual) {
		g.hold(own.Package, nil, h, false)
		return Event{}, false
	}
	e := g.plainEvent(ev)
	e.Tampered = true
	if e.After == nil {
		e.After = Object{}
	}
	e.After["package"] = own.Package
	e.After["expected_"+own.Digest] = hex.EncodeToString(own.Sum[:])
	// The index keeps 128 bits of a SHA-256: show like with like.
	e.After["actual_"+own.Digest] = hex.EncodeToString(actual[:16])
	g.tampered.Add(1)
	g.log.Warn("packaged file changed outside any package transaction", "path", ev.Path, "package", own.Package,
		"expected_"+own.Digest, e.After["expected_"+own.Digest], "actual_"+own.Digest, e.After["actual_"+own.Digest])
	return e, true
}

func (g *Grouper) plainEvent(ev fim.Event) Event {
	g.plain.Add(1)
	return FromFIM(ev, g.opts.Config.Host)
}

// hold adds an explained event to its package's group (w nil: explained by the checksum alone).
func (g *Grouper) hold(key string, w *Window, h heldEvent, transient bool) {
	g.grouped.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.groups[key]
	if gr == nil {
		gr = &pkgGroup{key: key, paths: map[string]struct{}{}, first: h.seen, evTime: h.ev.Time}
		g.groups[key] = gr
	}
	if w != nil && (!gr.hasWin || w.Start.After(gr.win.Start)) {
		gr.win, gr.hasWin = *w, true
	}
	gr.last = laterOf(gr.last, h.seen)
	gr.evTime = earlierOf(gr.evTime, h.ev.Time)
	if !transient {
		gr.paths[h.ev.Path] = struct{}{}
	}
}

// groupEvent is a group's one event (see Grouper for its shape). Called with g.mu held.
func (g *Grouper) groupEvent(gr *pkgGroup) Event {
	e := Event{Host: g.opts.Config.Host, Time: gr.evTime.UTC(), Kind: KindFiles, Object: PackageObject(gr.key), Action: Changed,
		After: Object{"package": gr.key, "files_changed": strconv.Itoa(len(gr.paths))}}
	switch s, ok := g.snapshot[gr.key]; {
	case gr.hasWin:
		e.Action = gr.win.ChangeAction()
		e.After["transaction"] = gr.win.Action
		if gr.win.From != "" {
			e.Before = Object{"version": gr.win.From}
		}
		if gr.win.To != "" && e.Action != Removed {
			e.After["version"] = gr.win.To
		}
	case ok:
		// No dpkg.log (rpm), but the snapshot saw the version change.
		e.Action = s.action
		if s.from != "" {
			e.Before = Object{"version": s.from}
		}
		if s.to != "" {
			e.After["version"] = s.to
		}
		e.After["verified"] = "checksum"
	default:
		// No transaction known: the files now hold the package's content (an rpm upgrade before
		// the snapshot saw it, or files restored by hand).
		e.After["verified"] = "checksum"
		if v, ok := g.idx.Version(gr.key); ok {
			e.After["version"] = v
		}
	}
	files := slices.Sorted(maps.Keys(gr.paths))
	if len(files) > MaxGroupedFiles {
		files = files[:MaxGroupedFiles]
	}
	e.Files = files
	return e
}

// PackageObject is the object of a package's grouped file event: "package name:arch".
func PackageObject(key string) string { return "package " + key }

// fileDigest hashes a file with the package database's algorithm.
func fileDigest(p, algo string) ([]byte, error) {
	var h hash.Hash
	switch algo {
	case "md5":
		h = md5.New()
	case "sha256":
		h = sha256.New()
	default:
		return nil, fmt.Errorf("digest %q not supported", algo)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// FromFIM converts a file-integrity event to a journal event as it is: kind "files", the absolute
// path as object, created/deleted/changed as added/removed/changed. A created or deleted path
// carries all its attributes; a changed one only those that changed (ctime, which every change
// moves, only when nothing else did). The SHA-256 is shortened to 16 hex digits: it identifies
// content on a timeline, it is not kept as proof.
func FromFIM(ev fim.Event, host string) Event {
	e := Event{Host: host, Time: ev.Time.UTC(), Kind: KindFiles, Object: ev.Path}
	switch ev.Kind {
	case fim.Created:
		e.Action, e.After = Added, entryAttrs(ev.New, nil)
	case fim.Deleted:
		e.Action, e.Before = Removed, entryAttrs(ev.Old, nil)
	default:
		e.Action = Changed
		only := map[string]bool{}
		for _, a := range ev.Changed {
			only[a] = true
		}
		if len(only) > 1 {
			delete(only, fim.AttrCtime)
		}
		e.Before, e.After = entryAttrs(ev.Old, only), entryAttrs(ev.New, only)
	}
	return e
}

// entryAttrs shows an entry's attributes, all of them or only those in only.
func entryAttrs(en *fim.Entry, only map[string]bool) Object {
	if en == nil {
		return nil
	}
	o := Object{}
	set := func(k, v string) {
		if only == nil || only[k] {
			o[k] = v
		}
	}
	set(fim.AttrType, en.Type.String())
	if en.Type == fim.TypeFile {
		set(fim.AttrSize, strconv.FormatInt(en.Size, 10))
	}
	set(fim.AttrMode, fileMode(en.Mode).String())
	set(fim.AttrUID, strconv.FormatUint(uint64(en.UID), 10))
	set(fim.AttrGID, strconv.FormatUint(uint64(en.GID), 10))
	set(fim.AttrMtime, time.Unix(0, en.Mtime).UTC().Format(time.RFC3339Nano))
	if only != nil {
		set(fim.AttrCtime, time.Unix(0, en.Ctime).UTC().Format(time.RFC3339Nano))
		set(fim.AttrInode, strconv.FormatUint(en.Inode, 10))
	}
	if en.Type == fim.TypeSymlink || (only != nil && only[fim.AttrLink]) {
		set(fim.AttrLink, en.Link)
	}
	if en.HasHash {
		set(fim.AttrHash, hex.EncodeToString(en.SHA256[:8]))
	}
	return o
}

// fileMode turns st_mode into the fs.FileMode whose String the config_files source also shows
// (Go's notation: "urwxr-xr-x" for a setuid executable).
func fileMode(m uint32) fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	switch m & syscall.S_IFMT {
	case syscall.S_IFDIR:
		fm |= fs.ModeDir
	case syscall.S_IFLNK:
		fm |= fs.ModeSymlink
	case syscall.S_IFIFO:
		fm |= fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		fm |= fs.ModeSocket
	case syscall.S_IFCHR:
		fm |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFBLK:
		fm |= fs.ModeDevice
	}
	return fm
}
