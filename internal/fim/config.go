// Package fim is the file-integrity core of the change monitor: a baseline of configured trees kept on
// disk (one sorted file per tree, never all in memory), verification scans that stream-merge the walk
// with the previous baseline and re-hash only what stat says may have changed, and real-time watching
// through inotify (fsnotify) where the kernel's watch limit allows. Changes leave as Events through a
// Sink; the journal, package-upgrade grouping and the agent's wiring are other pieces of issue 6.
package fim

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// Config says what to watch and how hard to look.
type Config struct {
	// StateDir holds one baseline file per tree.
	StateDir string
	// Trees are the roots to watch. Symbolic links are never followed: a link is recorded with its target.
	Trees []Tree
	// ScanInterval is the time between verification scans in Run (default 1 h).
	ScanInterval time.Duration
	// Paranoid forces a full re-hash of every regular file once per FullRehashInterval (default 24 h),
	// whatever stat says: it catches content changed with size, mtime, ctime and inode forged back.
	Paranoid           bool
	FullRehashInterval time.Duration
	// DirTimes reports mtime/ctime changes of directories. Off by default: a directory's times change
	// whenever an entry is added or removed, and that entry's own event already says so.
	DirTimes bool
	// HashWorkers bounds concurrent hashing (default GOMAXPROCS).
	HashWorkers int
	// MaxWatches bounds inotify watches (one per directory; default 8192). Past it, or past the
	// kernel's max_user_watches, the rest of the tree is covered by the verification scans only.
	MaxWatches int
	// MaxErrors bounds the scan errors kept per scan (default 100); the rest are only counted.
	MaxErrors int
	// Debounce is how long the watcher waits for a burst of writes to a path to settle (default 100 ms).
	Debounce time.Duration
	// Watch enables real-time watching in Run.
	Watch bool
}

// Tree is one watched root.
type Tree struct {
	Path string
	// Exclude: a pattern starting with "^" is a regular expression anchored at both ends, matched
	// against the absolute path; anything else is a glob (path/filepath.Match) matched against the
	// absolute path and, when it has no "/", against the base name. An excluded directory is not entered.
	Exclude []string
}

func (c *Config) setDefaults() {
	if c.ScanInterval <= 0 {
		c.ScanInterval = time.Hour
	}
	if c.FullRehashInterval <= 0 {
		c.FullRehashInterval = 24 * time.Hour
	}
	if c.HashWorkers <= 0 {
		c.HashWorkers = runtime.GOMAXPROCS(0)
	}
	if c.MaxWatches <= 0 {
		c.MaxWatches = 8192
	}
	if c.MaxErrors <= 0 {
		c.MaxErrors = 100
	}
	if c.Debounce <= 0 {
		c.Debounce = 100 * time.Millisecond
	}
}

// matcher decides exclusion for one tree.
type matcher struct {
	globs    []string
	baseOnly []string
	res      []*regexp.Regexp
}

// newMatcher compiles a tree's exclusions; field prefixes each error ("trees[0].").
func newMatcher(field string, patterns []string) (*matcher, error) {
	m := &matcher{}
	var errs []error
	for i, p := range patterns {
		switch {
		case p == "":
			errs = append(errs, fmt.Errorf("%sexclude[%d]: empty pattern", field, i))
		case strings.HasPrefix(p, "^"):
			expr := p
			if !strings.HasSuffix(expr, "$") {
				expr += "$"
			}
			re, err := regexp.Compile(expr)
			if err != nil {
				errs = append(errs, fmt.Errorf("%sexclude[%d]: %w", field, i, err))
				continue
			}
			m.res = append(m.res, re)
		default:
			if _, err := filepath.Match(p, ""); err != nil {
				errs = append(errs, fmt.Errorf("%sexclude[%d]: %q: %w", field, i, p, err))
				continue
			}
			if strings.Contains(p, "/") {
				m.globs = append(m.globs, p)
			} else {
				m.baseOnly = append(m.baseOnly, p)
			}
		}
	}
	return m, errors.Join(errs...)
}

func (m *matcher) excluded(abs string) bool {
	if m == nil {
		return false
	}
	for _, g := range m.globs {
		if ok, _ := filepath.Match(g, abs); ok {
			return true
		}
	}
	if len(m.baseOnly) > 0 {
		base := filepath.Base(abs)
		for _, g := range m.baseOnly {
			if ok, _ := filepath.Match(g, base); ok {
				return true
			}
		}
	}
	for _, re := range m.res {
		if re.MatchString(abs) {
			return true
		}
	}
	return false
}

// Validate reports every problem in the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.StateDir == "" {
		errs = append(errs, errors.New("state_dir: required"))
	}
	if len(c.Trees) == 0 {
		errs = append(errs, errors.New("trees: at least one tree is required"))
	}
	seen := map[string]bool{}
	for i, t := range c.Trees {
		if !filepath.IsAbs(t.Path) {
			errs = append(errs, fmt.Errorf("trees[%d].path: %q is not absolute", i, t.Path))
		}
		clean := filepath.Clean(t.Path)
		if seen[clean] {
			errs = append(errs, fmt.Errorf("trees[%d].path: %q is listed twice", i, t.Path))
		}
		seen[clean] = true
		if _, err := newMatcher(fmt.Sprintf("trees[%d].", i), t.Exclude); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
