package changes

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func init() { register("hardware", readHardware) }

func readHardware(_ context.Context, e *env) (Objects, error) {
	online, err := os.ReadFile(filepath.Join(e.cfg.SysPath, "devices/system/cpu/online"))
	if err != nil {
		return nil, fmt.Errorf("cpus online: %w", err)
	}
	n, err := CountCPUList(string(online))
	if err != nil {
		return nil, fmt.Errorf("cpus online: %w", err)
	}
	mi, err := os.ReadFile(filepath.Join(e.cfg.ProcPath, "meminfo"))
	if err != nil {
		return nil, fmt.Errorf("meminfo: %w", err)
	}
	total, err := memTotal(mi)
	if err != nil {
		return nil, err
	}
	return Objects{
		"cpu":    Object{"cores_online": strconv.Itoa(n)},
		"memory": Object{"total_bytes": strconv.FormatUint(total, 10)},
	}, nil
}

// CountCPUList counts the CPUs of a kernel CPU list ("0-3,8,10-11").
func CountCPUList(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0, fmt.Errorf("bad cpu list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 1<<20 {
				return 0, fmt.Errorf("bad cpu list %q", s)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

func memTotal(data []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			v, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("meminfo MemTotal %q: %w", f[1], err)
			}
			return v * 1024, nil
		}
	}
	return 0, fmt.Errorf("meminfo: no MemTotal")
}
