package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

func init() { register("meminfo", true, newMeminfo) }

// meminfoCollector exposes every line of /proc/meminfo under node_exporter's names
// (node_memory_MemAvailable_bytes, node_memory_SwapFree_bytes, node_memory_Active_anon_bytes, ...).
//
// It parses the file itself rather than through procfs.Meminfo because node_exporter's names are
// derived from the kernel's field names, which procfs's struct does not keep; a new kernel field
// then appears without a code change, as it does in node_exporter.
type meminfoCollector struct {
	path string
	buf  []byte

	mu    sync.Mutex
	descs map[string]*Desc // by kernel field name; the set is fixed per kernel, so built once
}

func newMeminfo(cfg *Config, _ *slog.Logger) (Collector, error) {
	return &meminfoCollector{
		path:  filepath.Join(cfg.ProcPath, "meminfo"),
		descs: map[string]*Desc{},
	}, nil
}

func (c *meminfoCollector) Update(_ context.Context, m *Metrics) error {
	c.mu.Lock() // the buffer and the descriptor cache are reused across scrapes
	defer c.mu.Unlock()
	data, err := readInto(c.path, c.buf)
	if err != nil {
		return fmt.Errorf("reading meminfo: %w", err)
	}
	c.buf = data
	var perr error
	parseMeminfo(data, func(key []byte, value float64) {
		d, ok := c.descs[string(key)] // no allocation: the compiler elides the conversion for lookups
		if !ok {
			d = newDesc(meminfoMetricName(key), "Memory information field "+string(key)+" from /proc/meminfo.", nil)
			c.descs[string(key)] = d
		}
		m.Gauge(d, value)
	}, func(err error) {
		if perr == nil {
			perr = err
		}
	})
	return perr
}

// meminfoMetricName maps a kernel field name to node_exporter's metric name:
// "Active(anon)" kB -> node_memory_Active_anon_bytes; "HugePages_Total" (a count) keeps no unit.
func meminfoMetricName(key []byte) string {
	name := make([]byte, 0, len(key)+20)
	name = append(name, "node_memory_"...)
	for _, b := range key {
		switch {
		case b == '(':
			name = append(name, '_')
		case b == ')':
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '_':
			name = append(name, b)
		default:
			name = append(name, '_')
		}
	}
	return string(name)
}

// parseMeminfo calls emit for each "Key:   value [kB]" line, with kB converted to bytes and the
// suffix _bytes added to the key's metric name by the caller's naming; lines it cannot read go to bad.
func parseMeminfo(data []byte, emit func(key []byte, value float64), bad func(error)) {
	var withUnit []byte // key + "_bytes", built here for every line given in kB
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			bad(fmt.Errorf("meminfo: malformed line %q", line))
			continue
		}
		key := line[:colon]
		num, rest := nextField(line[colon+1:])
		unit, rest := nextField(rest)
		if extra, _ := nextField(rest); len(num) == 0 || len(extra) > 0 {
			bad(fmt.Errorf("meminfo: malformed line %q", line))
			continue
		}
		v, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			bad(fmt.Errorf("meminfo: %s: %w", key, err))
			continue
		}
		if len(unit) > 0 {
			if !bytes.Equal(unit, []byte("kB")) {
				bad(fmt.Errorf("meminfo: %s: unknown unit %q", key, unit))
				continue
			}
			// node_exporter appends _bytes to the name of every field the kernel gives in kB.
			withUnit = append(append(withUnit[:0], key...), "_bytes"...)
			emit(withUnit, float64(v)*1024)
			continue
		}
		emit(key, float64(v))
	}
}

// nextField splits off the first field of b separated by ASCII white space, as bytes.Fields would
// find it, without building the list of all fields.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && asciiSpace(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !asciiSpace(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// readInto reads a whole (small, virtual) file into buf's storage, growing it as needed, so that a
// collector reading the same file every scrape allocates only the first time.
func readInto(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	buf = buf[:0]
	if cap(buf) < 4096 {
		buf = make([]byte, 0, 4096)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			return buf, err
		}
		if n == 0 {
			return buf, nil
		}
	}
}
