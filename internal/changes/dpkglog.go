package changes

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Window is a package's latest dpkg transaction as /var/log/dpkg.log tells it: from the action line
// (install, upgrade, remove, purge; or configure, trigproc and status lines on their own) through
// the status lines that follow it, up to "installed", "config-files" or "not-installed".
type Window struct {
	// Package is the key dpkg logs: name:arch (name alone in logs older than multi-arch).
	Package string
	// Action is the verb that opened the window: install, upgrade, remove, purge, configure,
	// trigproc, or status.
	Action string
	// From and To are the versions before and after ("" for none).
	From, To   string
	Start, End time.Time
	// Open is true while the package's last status is not final (half-installed, unpacked,
	// half-configured...): dpkg is, or was interrupted, working on it.
	Open bool
}

// ChangeAction is the event action the window amounts to.
func (w *Window) ChangeAction() string {
	switch w.Action {
	case "install":
		return Added
	case "remove", "purge":
		return Removed
	}
	return Changed
}

// Contains reports whether t falls in the window, widened by slack on both sides (dpkg.log has
// whole seconds, and the file monitor reports a change after its debounce). An open window runs
// to now, but not past openLimit after its last line: a dpkg killed mid-upgrade must not excuse
// that package's files for ever.
func (w *Window) Contains(t, now time.Time, slack, openLimit time.Duration) bool {
	end := w.End.Add(time.Second) // the whole last second
	if w.Open {
		end = laterOf(end, earlierOf(now, w.End.Add(openLimit)))
	}
	return !t.Before(w.Start.Add(-slack)) && !t.After(end.Add(slack))
}

// mergeGap is how close (in dpkg.log's whole seconds) a purge must follow a remove to be the same
// transaction, and a configure or status line to extend a closed window.
const mergeGap = 2 * time.Second

// dpkgLogParser keeps each package's latest window.
type dpkgLogParser struct {
	loc     *time.Location
	windows map[string]*Window
}

func newDpkgLogParser(loc *time.Location) *dpkgLogParser {
	if loc == nil {
		loc = time.Local
	}
	return &dpkgLogParser{loc: loc, windows: map[string]*Window{}}
}

func none(v string) string {
	if v == "<none>" {
		return ""
	}
	return v
}

// line feeds one line of dpkg.log: "2026-11-22 01:02:03 upgrade pkg:arch 1.0 2.0".
func (p *dpkgLogParser) line(s string) {
	f := strings.Fields(s)
	if len(f) < 4 {
		return
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", f[0]+" "+f[1], p.loc)
	if err != nil {
		return
	}
	verb := f[2]
	cur := func(pkg string) *Window { return p.windows[pkg] }
	switch verb {
	case "install", "upgrade", "remove", "purge":
		if len(f) < 6 {
			return
		}
		pkg, from, to := f[3], none(f[4]), none(f[5])
		if w := cur(pkg); verb == "purge" && w != nil && (w.Action == "remove" || w.Action == "purge") && t.Sub(w.End) <= mergeGap {
			w.Action, w.End, w.Open = "purge", laterOf(w.End, t), true
			return
		}
		p.windows[pkg] = &Window{Package: pkg, Action: verb, From: from, To: to, Start: t, End: t, Open: true}
	case "configure", "trigproc":
		if len(f) < 5 {
			return
		}
		pkg, ver := f[3], none(f[4])
		if w := cur(pkg); w != nil && (w.Open || t.Sub(w.End) <= mergeGap) {
			w.End, w.Open = laterOf(w.End, t), true
			return
		}
		p.windows[pkg] = &Window{Package: pkg, Action: verb, From: ver, To: ver, Start: t, End: t, Open: true}
	case "status":
		if len(f) < 6 {
			return
		}
		state, pkg, ver := f[3], f[4], none(f[5])
		final := state == "installed" || state == "config-files" || state == "not-installed"
		if w := cur(pkg); w != nil && (w.Open || t.Sub(w.End) <= mergeGap) {
			w.End, w.Open = laterOf(w.End, t), !final
			return
		}
		if final {
			// A bare final status (dpkg's "startup" bookkeeping) is no transaction.
			return
		}
		p.windows[pkg] = &Window{Package: pkg, Action: verb, From: ver, To: ver, Start: t, End: t, Open: true}
	}
}

// ParseDpkgLog returns each package's latest transaction window in a dpkg.log, whose times are in
// loc (dpkg logs local time; nil means time.Local).
func ParseDpkgLog(data []byte, loc *time.Location) map[string]Window {
	p := newDpkgLogParser(loc)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.line(sc.Text())
	}
	out := make(map[string]Window, len(p.windows))
	for k, w := range p.windows {
		out[k] = *w
	}
	return out
}

// DpkgLog follows /var/log/dpkg.log, reading only what was appended since the last Refresh (and
// from the start after logrotate replaced it).
type DpkgLog struct {
	path string

	mu   sync.Mutex
	p    *dpkgLogParser
	off  int64
	ino  uint64
	rest []byte // an incomplete last line, finished by the next read
}

// NewDpkgLog follows the dpkg.log at path (cfg.RootPath + /var/log/dpkg.log when empty).
func NewDpkgLog(cfg Config, path string, loc *time.Location) *DpkgLog {
	if path == "" {
		path = cfg.rootPath("/var/log/dpkg.log")
	}
	return &DpkgLog{path: path, p: newDpkgLogParser(loc)}
}

// Refresh reads what was appended to the log. A missing log is no error: the host has no dpkg.
func (l *DpkgLog) Refresh() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.Open(l.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dpkg log: %w", err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("dpkg log: %w", err)
	}
	if st.Ino != l.ino || st.Size < l.off {
		// Rotated or truncated: the windows already read stay (the newest per package wins).
		l.ino, l.off, l.rest = st.Ino, 0, nil
	}
	if st.Size == l.off {
		return nil
	}
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return fmt.Errorf("dpkg log: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, st.Size-l.off))
	if err != nil {
		return fmt.Errorf("dpkg log: %w", err)
	}
	l.off += int64(len(data))
	data = append(l.rest, data...)
	last := bytes.LastIndexByte(data, '\n')
	l.rest = append([]byte(nil), data[last+1:]...)
	for _, line := range bytes.Split(data[:last+1], []byte("\n")) {
		l.p.line(string(line))
	}
	return nil
}

// Window returns a package's latest transaction; key is name:arch, and a log without
// architectures is matched by name.
func (l *DpkgLog) Window(key string) (Window, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.p.windows[key]; ok {
		return *w, true
	}
	if name, _, ok := strings.Cut(key, ":"); ok {
		if w, ok := l.p.windows[name]; ok {
			return *w, true
		}
	}
	return Window{}, false
}

// Covering returns the windows that contain t (see Window.Contains).
func (l *DpkgLog) Covering(t, now time.Time, slack, openLimit time.Duration) []Window {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Window
	for _, w := range l.p.windows {
		if w.Contains(t, now, slack, openLimit) {
			out = append(out, *w)
		}
	}
	return out
}

// Busy reports whether dpkg is working on some package now: a window still open whose last line
// is less than openLimit old.
func (l *DpkgLog) Busy(now time.Time, openLimit time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.p.windows {
		if w.Open && now.Sub(w.End) < openLimit {
			return true
		}
	}
	return false
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlierOf(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
