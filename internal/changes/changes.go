// Package changes is the change monitor's snapshot half: sources read what a host is made of
// (kernel and OS release, packages, watched configuration files, mounts, firewall rules, hardware,
// listening sockets, users and groups) into a Snapshot, Diff turns two consecutive snapshots into
// change events, and a Journal keeps those events on disk, bounded and crash-safe, until the hub
// acknowledges them. File integrity (every file's metadata, in real time) is internal/fim's.
//
// Sources follow the collectors' shape: one per file, registered by kind name in the file's init.
// Each returns a set of objects, key -> attributes, so one diff works for every kind: an object
// present only in the new snapshot is added, only in the old one removed, and present in both with
// different attributes changed. That is also why a package upgrade is one event: the object is the
// package (name:arch) and the version is its attribute.
package changes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Object is one thing a source saw, by attribute. Attribute "content" (configuration files only)
// holds redacted text for the diff; it is never shown as a before/after value.
type Object map[string]string

// Objects are a source's findings by key (a package's name:arch, a mount point, a rule).
type Objects map[string]Object

// contentAttr is the attribute holding redacted text to diff rather than to show.
const contentAttr = "content"

// Config says what the sources read and where.
type Config struct {
	// RootPath prefixes every absolute file path the sources read (/etc, /var/lib/dpkg): tests
	// point it at fixture trees. ProcPath and SysPath are /proc and /sys.
	RootPath, ProcPath, SysPath string
	// ConfigFiles are the paths and globs (filepath.Match syntax) of the configuration files to
	// watch; nil means DefaultConfigFiles.
	ConfigFiles []string
	// Redact are regular expressions applied to each line of a configuration file before anything
	// is stored: a match with a first group keeps that group and replaces the rest of the line with
	// "<redacted>"; without a group the whole match is replaced. Nil means DefaultRedact.
	Redact []string
	// MaxTextBytes is the size under which a text file's content is kept for the diff (default
	// 64 KiB); larger or binary files are compared by hash only.
	MaxTextBytes int64
	// Kinds limits the sources run (default: every registered kind).
	Kinds []string
	// Host names the events' host (default os.Hostname).
	Host string
}

// DefaultConfigFiles are configuration files that matter on most Debian and RHEL hosts.
var DefaultConfigFiles = []string{
	"/etc/fstab", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/etc/crontab",
	"/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/*.conf", "/etc/sudoers", "/etc/sudoers.d/*",
	"/etc/sysctl.conf", "/etc/sysctl.d/*.conf", "/etc/security/limits.conf", "/etc/nsswitch.conf",
	"/etc/apt/sources.list", "/etc/apt/sources.list.d/*", "/etc/yum.repos.d/*.repo",
}

// DefaultRedact redacts the value of assignments whose name mentions a password, secret, token,
// credential or a private, pre-shared, API or access key (or ends in _key/-key/.key), in
// `name = value`, `name: value`, `"name": value` and `name value` forms. A bare "key" is not
// enough: sshd_config's PubkeyAuthentication and HostKey are settings a change monitor must show.
var DefaultRedact = []string{
	`(?i)^(\s*[^\s=:#;]*(?:password|passwd|passphrase|secret|token|credential|private_?key|preshared_?key|api_?key|access_?key|[_.-]key\b)[^\s=:]*\s*[=:]?\s*)\S.*$`,
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.ProcPath == "" {
		d.ProcPath = "/proc"
	}
	if d.SysPath == "" {
		d.SysPath = "/sys"
	}
	if d.ConfigFiles == nil {
		d.ConfigFiles = DefaultConfigFiles
	}
	if d.Redact == nil {
		d.Redact = DefaultRedact
	}
	if d.MaxTextBytes <= 0 {
		d.MaxTextBytes = 64 << 10
	}
	if d.Host == "" {
		d.Host, _ = os.Hostname()
	}
	return d
}

// rootPath is an absolute path under the configured root.
func (c *Config) rootPath(p string) string {
	if c.RootPath == "" {
		return p
	}
	return filepath.Join(c.RootPath, p)
}

// source reads one kind of object.
type source func(ctx context.Context, env *env) (Objects, error)

var sources = map[string]source{}

func register(kind string, s source) { sources[kind] = s }

// Kinds lists the registered kinds, sorted.
func Kinds() []string { return slices.Sorted(maps.Keys(sources)) }

// env is what a source gets: the configuration with defaults and the compiled redaction rules.
type env struct {
	cfg    Config
	redact []*regexp.Regexp
}

// ErrToolMissing marks a source (or part of one) skipped because its program is not installed.
var ErrToolMissing = errors.New("tool not installed")

// Snapshot is every source's objects at one time.
type Snapshot struct {
	Host string             `json:"host"`
	Time time.Time          `json:"time"`
	Kind map[string]Objects `json:"kinds"`
	// Errors are the kinds that could not be read this time, with why. Their objects are carried
	// over from the previous snapshot (see Take) so that a failed read is not mistaken for
	// everything having been removed.
	Errors map[string]string `json:"errors,omitempty"`
}

// Objects counts the snapshot's objects.
func (s *Snapshot) Objects() int {
	n := 0
	for _, o := range s.Kind {
		n += len(o)
	}
	return n
}

// Take runs the configured sources concurrently and returns their objects. A source that fails
// is recorded in Errors and the others go on; with prev given, a failed kind keeps prev's objects.
func Take(ctx context.Context, cfg Config, prev *Snapshot) (*Snapshot, error) {
	c := cfg.withDefaults()
	e := &env{cfg: c}
	for _, r := range c.Redact {
		re, err := regexp.Compile(r)
		if err != nil {
			return nil, fmt.Errorf("redact %q: %w", r, err)
		}
		e.redact = append(e.redact, re)
	}
	kinds := c.Kinds
	if len(kinds) == 0 {
		kinds = Kinds()
	}
	for _, k := range kinds {
		if sources[k] == nil {
			return nil, fmt.Errorf("unknown kind %q; known: %v", k, Kinds())
		}
	}
	type result struct {
		kind string
		objs Objects
		err  error
	}
	ch := make(chan result, len(kinds))
	for _, k := range kinds {
		go func() {
			defer func() {
				if r := recover(); r != nil {
					ch <- result{kind: k, err: fmt.Errorf("panic: %v", r)}
				}
			}()
			objs, err := sources[k](ctx, e)
			ch <- result{k, objs, err}
		}()
	}
	s := &Snapshot{Host: c.Host, Time: time.Now().UTC(), Kind: map[string]Objects{}}
	for range kinds {
		r := <-ch
		if r.err != nil {
			if s.Errors == nil {
				s.Errors = map[string]string{}
			}
			s.Errors[r.kind] = r.err.Error()
			if prev != nil && prev.Kind[r.kind] != nil {
				s.Kind[r.kind] = prev.Kind[r.kind]
			}
			continue
		}
		s.Kind[r.kind] = r.objs
	}
	return s, ctx.Err()
}

// Event is one change between two snapshots.
type Event struct {
	// Seq is the journal's sequence number, set by Journal.Append.
	Seq    uint64    `json:"seq,omitempty"`
	Host   string    `json:"host"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Object string    `json:"object"`
	Action string    `json:"action"` // added, removed, changed
	Before Object    `json:"before,omitempty"`
	After  Object    `json:"after,omitempty"`
	// Diff is a unified diff of a text configuration file's (redacted) content.
	Diff string `json:"diff,omitempty"`
	// Files are the paths a package event accounts for: file-integrity changes explained by the
	// package transaction, grouped here instead of reported one by one (at most MaxGroupedFiles;
	// After["files_changed"] has the full count).
	Files []string `json:"files,omitempty"`
	// Tampered marks a file-integrity event on a file a package owns whose content differs from
	// the package's recorded checksum: the change no package transaction explains.
	Tampered bool `json:"tampered,omitempty"`
}

// MaxGroupedFiles bounds Event.Files.
const MaxGroupedFiles = 1000

// KindFiles is the kind of file-integrity events in the journal (internal/fim's, converted by
// FromFIM or grouped under a package event).
const KindFiles = "files"

// Actions.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// Diff returns the changes from prev to cur, sorted by kind and object. A kind that is new in cur
// (first snapshot, or a source enabled since) is a baseline, not a flood of additions, and a kind
// that failed in either snapshot is compared only where both have it (Take carries it over).
func Diff(prev, cur *Snapshot) []Event {
	var out []Event
	if prev == nil {
		return nil
	}
	for _, kind := range slices.Sorted(maps.Keys(cur.Kind)) {
		before, ok := prev.Kind[kind]
		if !ok {
			continue
		}
		after := cur.Kind[kind]
		keys := map[string]bool{}
		for k := range before {
			keys[k] = true
		}
		for k := range after {
			keys[k] = true
		}
		sorted := slices.Sorted(maps.Keys(keys))
		for _, k := range sorted {
			b, inB := before[k]
			a, inA := after[k]
			ev := Event{Host: cur.Host, Time: cur.Time, Kind: kind, Object: k}
			switch {
			case !inB:
				ev.Action, ev.After = Added, shown(a)
			case !inA:
				ev.Action, ev.Before = Removed, shown(b)
			case maps.Equal(a, b):
				continue
			default:
				ev.Action = Changed
				ev.Before, ev.After = changedAttrs(b, a)
				if b[contentAttr] != a[contentAttr] {
					ev.Diff = UnifiedDiff(k, b[contentAttr], a[contentAttr])
				}
			}
			out = append(out, ev)
		}
	}
	return out
}

// shown is an object without its content, which an event carries as a diff if at all.
func shown(o Object) Object {
	if _, ok := o[contentAttr]; !ok {
		return o
	}
	c := maps.Clone(o)
	delete(c, contentAttr)
	return c
}

// changedAttrs keeps only the attributes that differ, so that an event says what changed.
func changedAttrs(b, a Object) (Object, Object) {
	ob, oa := Object{}, Object{}
	for k, v := range b {
		if k != contentAttr && a[k] != v {
			ob[k] = v
		}
	}
	for k, v := range a {
		if _, ok := b[k]; k != contentAttr && (!ok || b[k] != v) {
			oa[k] = v
		}
	}
	return ob, oa
}

// Summary is the event as one line for people: "packages: sage-test-pkg:all upgraded from 1.0 to 2.0".
func (e *Event) Summary() string {
	switch {
	case e.Kind == "packages" && e.Action == Changed && e.Before["version"] != "" && e.After["version"] != "":
		return fmt.Sprintf("packages: %s upgraded from %s to %s", e.Object, e.Before["version"], e.After["version"])
	case e.Kind == "packages" && e.Action == Added:
		return fmt.Sprintf("packages: %s %s installed", e.Object, e.After["version"])
	case e.Kind == "packages" && e.Action == Removed:
		return fmt.Sprintf("packages: %s %s removed", e.Object, e.Before["version"])
	case e.Kind == KindFiles && e.Tampered:
		return fmt.Sprintf("files: %s TAMPERED: its content differs from package %s's checksum and no package transaction explains it", e.Object, e.After["package"])
	case e.Kind == KindFiles && strings.HasPrefix(e.Object, "package "):
		pkg := strings.TrimPrefix(e.Object, "package ")
		n := e.After["files_changed"]
		switch {
		case e.Action == Changed && e.Before["version"] != "" && e.After["version"] != "" && e.Before["version"] != e.After["version"]:
			return fmt.Sprintf("files: %s files changed by the upgrade of %s from %s to %s", n, pkg, e.Before["version"], e.After["version"])
		case e.Action == Added:
			return fmt.Sprintf("files: %s files installed by %s %s", n, pkg, e.After["version"])
		case e.Action == Removed:
			return fmt.Sprintf("files: %s files removed with %s %s", n, pkg, e.Before["version"])
		default:
			return fmt.Sprintf("files: %s files of %s replaced by the package manager", n, pkg)
		}
	}
	s := fmt.Sprintf("%s: %s %s", e.Kind, e.Object, e.Action)
	switch e.Action {
	case Added:
		s += " " + fmtAttrs(e.After)
	case Removed:
		s += " " + fmtAttrs(e.Before)
	case Changed:
		keys := map[string]bool{}
		for k := range e.Before {
			keys[k] = true
		}
		for k := range e.After {
			keys[k] = true
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			s += fmt.Sprintf(" %s: %q -> %q", k, e.Before[k], e.After[k])
		}
	}
	return s
}

func fmtAttrs(o Object) string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += " "
		}
		s += k + "=" + fmt.Sprintf("%q", o[k])
	}
	return "(" + s + ")"
}
