package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"
)

func init() { register("reboot", true, newReboot) }

// rebootStateFile is the name of the reboot collector's file in the state directory.
const rebootStateFile = "reboot.json"

// rebootCollector exposes the boot time under node_exporter's name and counts reboots, including
// those that happened while the agent was not running: it keeps the last boot id it saw in the
// state directory, and a different boot id at start means the host rebooted in between.
//
// It reads btime from /proc/stat itself rather than through procfs.Stat, which parses every CPU,
// IRQ and softirq line, with their allocations, for one number.
type rebootCollector struct {
	statPath   string
	bootIDPath string
	stateDir   string
	logger     *slog.Logger
	now        func() time.Time

	bootTimeDesc, rebootsDesc, bootIDDesc, lastRebootDesc *Desc

	mu        sync.Mutex // guards what follows
	bootID    string
	bootIDErr error
	state     rebootState
	loaded    bool // state holds the stored state, reconciled with the current boot id
	dirty     bool // state has not been written yet
}

// rebootState is what survives agent restarts.
type rebootState struct {
	BootID  string `json:"boot_id"`
	Reboots uint64 `json:"reboots"`
	// LastRebootDetected is the unix time at which the agent noticed the last reboot, 0 if never.
	LastRebootDetected float64 `json:"last_reboot_detected,omitempty"`
}

var errCorruptState = errors.New("corrupt reboot state")

func newReboot(cfg *Config, logger *slog.Logger) (Collector, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &rebootCollector{
		statPath:   filepath.Join(cfg.ProcPath, "stat"),
		bootIDPath: cfg.BootIDRef,
		stateDir:   cfg.StateDir,
		logger:     logger,
		now:        time.Now,
		bootTimeDesc: newDesc("node_boot_time_seconds",
			"Node boot time, in unixtime.", nil),
		rebootsDesc: newDesc(namespace+"_host_reboots_total",
			"Reboots of the host the agent has noticed, including those while it was not running.", nil),
		bootIDDesc: newDesc(namespace+"_host_boot_id_info",
			"The kernel's boot id, which changes on every boot.", []string{"boot_id"}),
		lastRebootDesc: newDesc(namespace+"_host_last_reboot_detected_timestamp_seconds",
			"Unix time at which the agent noticed the last reboot, 0 if never.", nil),
	}
	if c.bootIDPath == "" {
		c.bootIDPath = filepath.Join(cfg.ProcPath, "sys/kernel/random/boot_id")
	}
	c.bootID, c.bootIDErr = readBootID(c.bootIDPath)
	c.mu.Lock()
	_ = c.sync() // its error, if any, is reported by every Update until it clears
	c.mu.Unlock()
	return c, nil
}

func (c *rebootCollector) Update(ctx context.Context, m *Metrics) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	var btime uint64
	var perr error
	err := readShared(ctx, c.statPath, func(data []byte) { btime, perr = parseBtime(data) })
	if err == nil {
		if err = perr; err == nil {
			m.Gauge(c.bootTimeDesc, float64(btime))
		}
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("reading boot time: %w", err))
	}
	if err := c.sync(); err != nil {
		errs = append(errs, err)
	}
	if c.bootID != "" {
		m.Gauge(c.bootIDDesc, 1, c.bootID)
	}
	if c.loaded {
		m.Counter(c.rebootsDesc, float64(c.state.Reboots))
		m.Gauge(c.lastRebootDesc, c.state.LastRebootDetected)
	}
	return errors.Join(errs...)
}

// sync loads the stored state and compares its boot id with the current one, once, then writes the
// state until a write succeeds. It is cheap once done, so Update calls it to retry what failed.
func (c *rebootCollector) sync() error {
	if c.bootIDErr != nil {
		return fmt.Errorf("reading boot id: %w; reboots cannot be detected", c.bootIDErr)
	}
	if c.stateDir == "" {
		return errors.New("no state directory configured: reboots across agent restarts cannot be tracked")
	}
	path := filepath.Join(c.stateDir, rebootStateFile)
	if !c.loaded {
		if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
			return fmt.Errorf("creating state directory: %w; reboots across agent restarts cannot be tracked", err)
		}
		stored, err := readRebootState(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			c.state = rebootState{BootID: c.bootID} // first start: nothing to compare with
			c.dirty = true
		case errors.Is(err, errCorruptState):
			c.logger.Warn("reboot state file is corrupt; starting the reboot count over",
				"path", path, "err", err)
			c.state = rebootState{BootID: c.bootID}
			c.dirty = true
		case err != nil:
			return fmt.Errorf("reading reboot state: %w; reboots across agent restarts cannot be tracked", err)
		case stored.BootID != c.bootID:
			c.state = rebootState{
				BootID:             c.bootID,
				Reboots:            stored.Reboots + 1,
				LastRebootDetected: float64(c.now().UnixNano()) / 1e9,
			}
			c.dirty = true
			attrs := []any{"previous_boot_id", stored.BootID, "boot_id", c.bootID, "reboots", c.state.Reboots}
			if data, err := os.ReadFile(c.statPath); err == nil {
				if btime, err := parseBtime(data); err == nil {
					attrs = append(attrs, "boot_time", time.Unix(int64(btime), 0).UTC().Format(time.RFC3339))
				}
			}
			c.logger.Warn("host rebooted", attrs...)
		default:
			c.state = stored
		}
		c.loaded = true
	}
	if c.dirty {
		if err := writeRebootState(path, c.state); err != nil {
			return fmt.Errorf("writing reboot state: %w; reboots across agent restarts cannot be tracked", err)
		}
		c.dirty = false
	}
	return nil
}

func readBootID(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	id := string(bytes.TrimSpace(data))
	if id == "" || len(id) > 64 || !utf8.ValidString(id) {
		return "", fmt.Errorf("%s: unexpected content %q", path, data[:min(len(data), 64)])
	}
	return id, nil
}

func readRebootState(path string) (rebootState, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return rebootState{}, err
	}
	return decodeRebootState(data)
}

func decodeRebootState(data []byte) (rebootState, error) {
	var s rebootState
	if err := json.Unmarshal(data, &s); err != nil {
		return rebootState{}, fmt.Errorf("%w: %v", errCorruptState, err)
	}
	if s.BootID == "" || s.LastRebootDetected < 0 {
		return rebootState{}, fmt.Errorf("%w: no boot id or a negative time", errCorruptState)
	}
	return s, nil
}

// writeRebootState replaces the state file atomically, and durably: a crash is exactly when the
// next start needs it.
func writeRebootState(path string, s rebootState) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: makes the rename itself durable
		d.Close()
	}
	return nil
}
