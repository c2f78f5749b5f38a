package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

func init() { register("process_groups", true, newProcessGroups) }

// processGroupsCollector watches the configured process groups (nginx, postgres, ...): whether
// enough of them run, and what they use. It reads /proc/PID/stat of every process, and the more
// expensive exe, cmdline and fd of a process only when the cheaper criteria of a group already
// matched it, so a scrape stays well under a second at 10,000 processes. With no group configured
// it does nothing.
type processGroupsCollector struct {
	groups   []*procGroup
	byUser   bool
	pageSize uint64
	statPath string

	count   *Desc
	up      *Desc
	cpu     *Desc
	rss     *Desc
	threads *Desc
	fds     *Desc
	oldest  *Desc

	mu   sync.Mutex // guards everything below, kept across scrapes
	root string
	scan *procScanner // reads a candidate's uid, exe, cmdline and fds; walks outside a scrape
	own  procSnapshot // what it walked there
}

// procGroup is one configured group and what is accumulated about it.
type procGroup struct {
	name     string
	minCount int
	comm     []byte // nil: any
	exe      string // "": any; with a '/', the whole path, else the base name
	exeIsAbs bool
	cmdline  *regexp.Regexp
	user     string

	// Per scrape.
	uid       uint32
	uidKnown  bool // false: user names nobody on this host (yet), so nothing matches
	count     int
	liveUser  uint64 // ticks of the members seen in this scrape
	liveSys   uint64
	rssPages  uint64
	threads   uint64
	fds       uint64
	fdsDenied bool
	exeDenied int
	oldest    uint64 // smallest starttime, in ticks after boot
	cur       map[procKey]procTicks

	// Across scrapes: CPU of members seen before and gone since, so that the CPU counter does not
	// fall when a member exits, which rate() would read as a counter reset and turn into a spike.
	goneUser, goneSys uint64
	prev              map[procKey]procTicks
}

// procKey tells processes apart across scrapes: a PID is reused, a PID with its start time is not.
type procKey struct {
	pid   uint32
	start uint64
}

type procTicks struct{ user, sys uint64 }

func newProcessGroups(cfg *Config, _ *slog.Logger) (Collector, error) {
	c := &processGroupsCollector{
		pageSize: uint64(os.Getpagesize()),
		statPath: filepath.Join(cfg.ProcPath, "stat"),
		root:     cfg.ProcPath,
		scan:     newProcScanner(cfg.ProcPath),
	}
	seen := map[string]bool{}
	for i, pg := range cfg.ProcessGroups {
		if pg.Name == "" || seen[pg.Name] {
			return nil, fmt.Errorf("process_groups[%d]: missing or duplicate name %q", i, pg.Name)
		}
		seen[pg.Name] = true
		mt := pg.Match
		if mt.Comm == "" && mt.Exe == "" && mt.Cmdline == "" && mt.User == "" {
			return nil, fmt.Errorf("process group %q: no match criterion", pg.Name)
		}
		g := &procGroup{
			name:     pg.Name,
			minCount: max(pg.MinCount, 1),
			exe:      mt.Exe,
			exeIsAbs: strings.Contains(mt.Exe, "/"),
			user:     mt.User,
			cur:      map[procKey]procTicks{},
			prev:     map[procKey]procTicks{},
		}
		if mt.Comm != "" {
			g.comm = []byte(mt.Comm)
		}
		if mt.Cmdline != "" {
			re, err := regexp.Compile(mt.Cmdline)
			if err != nil {
				return nil, fmt.Errorf("process group %q: cmdline: %w", pg.Name, err)
			}
			g.cmdline = re
		}
		if mt.User != "" {
			c.byUser = true
		}
		c.groups = append(c.groups, g)
	}
	labels := []string{"group"}
	c.count = newDesc(namespace+"_process_group_processes",
		"Number of processes in the group.", labels)
	c.up = newDesc(namespace+"_process_group_up",
		"Whether at least min_count (at least 1 when min_count is 0) processes of the group run.", labels)
	c.cpu = newDesc(namespace+"_process_group_cpu_seconds_total",
		"CPU time of the group's processes, by mode; a member's time stays counted after it exits.",
		[]string{"group", "mode"})
	c.rss = newDesc(namespace+"_process_group_resident_memory_bytes",
		"Resident memory of the group's processes, summed (shared pages count in each).", labels)
	c.threads = newDesc(namespace+"_process_group_threads",
		"Number of threads of the group's processes.", labels)
	c.fds = newDesc(namespace+"_process_group_open_fds",
		"Open file descriptors of the group's processes; absent when some cannot be counted without privileges.",
		labels)
	c.oldest = newDesc(namespace+"_process_group_oldest_start_time_seconds",
		"Start time of the group's oldest process, in seconds since the epoch; absent when none runs.",
		labels)
	return c, nil
}

func (c *processGroupsCollector) Update(ctx context.Context, m *Metrics) error {
	if len(c.groups) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()

	var errs []error
	if c.byUser {
		errs = append(errs, c.resolveUsers()...)
	}
	for _, g := range c.groups {
		g.count, g.liveUser, g.liveSys, g.rssPages, g.threads, g.fds = 0, 0, 0, 0, 0, 0
		g.fdsDenied, g.exeDenied, g.oldest = false, 0, math.MaxUint64
		clear(g.cur)
	}

	var visitErr, bad error
	err := viewProcs(ctx, c.root, c.scan, &c.own, func(p *procSnapshot) {
		visitErr = c.visitAll(ctx, p)
		bad = p.badErr()
	})
	if err == nil {
		err = visitErr
	}
	if err != nil {
		// Totals from part of /proc would be wrong, and members not reached would be taken for
		// gone: report nothing and keep the previous scrape's members.
		return errors.Join(append(errs, fmt.Errorf("scanning processes: %w", err))...)
	}
	if bad != nil {
		errs = append(errs, bad)
	}

	var (
		btime     uint64
		btimeRead bool
		btimeErr  error
	)
	for _, g := range c.groups {
		for k, t := range g.prev {
			if _, ok := g.cur[k]; !ok {
				g.goneUser += t.user
				g.goneSys += t.sys
			}
		}
		g.prev, g.cur = g.cur, g.prev

		up := 0.0
		if g.count >= g.minCount {
			up = 1
		}
		m.Gauge(c.count, float64(g.count), g.name)
		m.Gauge(c.up, up, g.name)
		m.Counter(c.cpu, float64(g.goneUser+g.liveUser)/procUserHZ, g.name, "user")
		m.Counter(c.cpu, float64(g.goneSys+g.liveSys)/procUserHZ, g.name, "system")
		m.Gauge(c.rss, float64(g.rssPages*c.pageSize), g.name)
		m.Gauge(c.threads, float64(g.threads), g.name)
		if !g.fdsDenied {
			m.Gauge(c.fds, float64(g.fds), g.name)
		}
		if g.count > 0 {
			if !btimeRead {
				btime, btimeErr = c.bootTime(ctx)
				btimeRead = true
				if btimeErr != nil {
					errs = append(errs, btimeErr)
				}
			}
			if btimeErr == nil {
				m.Gauge(c.oldest, float64(btime)+float64(g.oldest)/procUserHZ, g.name)
			}
		}
		// Processes whose executable cannot be read (another user's, for an agent without
		// privileges; some even for root, in containers) may or may not be members. While the group
		// is up that does not change the verdict; when it is down, say why it may be wrong.
		if g.exeDenied > 0 && g.count < g.minCount {
			errs = append(errs, fmt.Errorf("process group %s is down, but the executable of %d processes could not be read (permission denied): run the agent as root, or match on comm, cmdline or user rather than exe",
				g.name, g.exeDenied))
		}
	}
	return errors.Join(errs...)
}

// resolveUsers looks up each group's user once per scrape, because accounts come and go (a
// package's install creates its user) while the agent runs. A name the host does not know matches
// no process; that is what it means, not an error.
func (c *processGroupsCollector) resolveUsers() []error {
	var errs []error
	type res struct {
		uid uint32
		ok  bool
	}
	cache := map[string]res{}
	for _, g := range c.groups {
		if g.user == "" {
			continue
		}
		r, done := cache[g.user]
		if !done {
			if n, err := strconv.ParseUint(g.user, 10, 32); err == nil {
				r = res{uint32(n), true}
			} else if u, err := user.Lookup(g.user); err == nil {
				if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
					r = res{uint32(n), true}
				}
			} else if !errors.As(err, new(user.UnknownUserError)) {
				errs = append(errs, fmt.Errorf("process group %s: looking up user %q: %w", g.name, g.user, err))
			}
			cache[g.user] = r
		}
		g.uid, g.uidKnown = r.uid, r.ok
	}
	return errs
}

// visitAll visits every process of p, with /proc open for the per-process reads of candidates,
// which on a host of many candidates are most of a scrape's cost: hence the looks at ctx.
func (c *processGroupsCollector) visitAll(ctx context.Context, p *procSnapshot) error {
	if err := c.scan.open(); err != nil {
		return err
	}
	defer c.scan.close()
	for i := range p.procs {
		if i > 0 && i%procPIDCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		c.visit(p.proc(i))
	}
	return nil
}

// visit adds one process to every group it matches, trying each group's criteria from the cheapest
// (comm: already read) to the dearest (uid: a stat; exe: a readlink; cmdline: an open and a read),
// and reading each of them, and the fds, at most once per process.
func (c *processGroupsCollector) visit(pid []byte, st *procStat) {
	var (
		uid              uint32
		uidDone          bool
		uidErr           error
		exe, cmd         []byte
		exeDone, cmdDone bool
		exeErr, cmdErr   error
		fds              int
		fdsDone          bool
		fdsErr           error
		key              procKey
		keyDone          bool
	)
	for _, g := range c.groups {
		if g.comm != nil && !bytes.Equal(st.comm, g.comm) {
			continue
		}
		if g.user != "" {
			if !g.uidKnown {
				continue
			}
			if !uidDone {
				uid, uidErr = c.scan.uid(pid)
				uidDone = true
			}
			if uidErr != nil || uid != g.uid {
				continue // an error: the process is gone
			}
		}
		if g.exe != "" {
			if !exeDone {
				exe, exeErr = c.scan.exePath(pid)
				exeDone = true
			}
			if exeErr != nil {
				if errors.Is(exeErr, syscall.EACCES) || errors.Is(exeErr, syscall.EPERM) {
					g.exeDenied++
				}
				continue // ENOENT: a kernel thread, or gone
			}
			if !procExeMatches(exe, g.exe, g.exeIsAbs) {
				continue
			}
		}
		if g.cmdline != nil {
			if !cmdDone {
				cmd, cmdErr = c.scan.cmdline(pid)
				cmdDone = true
			}
			if cmdErr != nil || !g.cmdline.Match(cmd) {
				continue
			}
		}

		if !keyDone {
			n, _ := parseDecimal(pid)
			key = procKey{pid: uint32(n), start: st.starttime}
			keyDone = true
		}
		g.count++
		g.liveUser += st.utime
		g.liveSys += st.stime
		g.cur[key] = procTicks{st.utime, st.stime}
		g.rssPages += st.rss
		g.threads += st.threads
		g.oldest = min(g.oldest, st.starttime)
		if !fdsDone {
			fds, fdsErr = c.scan.fdCount(pid)
			fdsDone = true
		}
		switch {
		case fdsErr == nil:
			g.fds += uint64(fds)
		case procVanished(fdsErr):
			// Exited since its stat was read: it held none.
		default:
			g.fdsDenied = true // a partial sum would look like a drop; report none
		}
	}
}

// procExeMatches compares an executable's path with a group's exe: the whole path when the group
// gives one, else the base name.
func procExeMatches(exe []byte, want string, abs bool) bool {
	if abs {
		return string(exe) == want
	}
	if i := bytes.LastIndexByte(exe, '/'); i >= 0 {
		exe = exe[i+1:]
	}
	return string(exe) == want
}

// bootTime reads btime from /proc/stat on every scrape that needs it rather than once, because it
// moves when the clock is stepped, as at boot on hosts without a real-time clock.
func (c *processGroupsCollector) bootTime(ctx context.Context) (uint64, error) {
	var (
		btime uint64
		perr  error
	)
	err := readShared(ctx, c.statPath, func(data []byte) {
		if btime, perr = parseBtime(data); perr != nil {
			perr = fmt.Errorf("reading boot time from %s: %w", c.statPath, perr)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("reading boot time: %w", err)
	}
	return btime, perr
}
