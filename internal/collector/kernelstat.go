package collector

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// userHZ is the unit of the CPU times in /proc/stat: fixed at 100 by the kernel's ABI on Linux,
// whatever the kernel's internal HZ.
const userHZ = 100

// kernelStat is what the cpu and stat collectors read from the system-wide /proc/stat.
//
// It is parsed here rather than with procfs.Stat because procfs parses every line (the long intr
// line included) with fmt.Sscan, which made /proc/stat the most expensive file of a scrape.
type kernelStat struct {
	cpus         []cpuTimes // indexed by CPU number; online marks the CPUs the file lists
	online       int
	intr         uint64
	ctxt         uint64
	btime        uint64
	forks        uint64
	procsRunning uint64
	procsBlocked uint64
}

// cpuTimes are the per-CPU times in seconds, in the order of the file's columns.
type cpuTimes struct {
	online                                                                  bool
	user, nice, system, idle, iowait, irq, softirq, steal, guest, guestNice float64
}

var errStatFormat = errors.New("malformed /proc/stat")

// parseKernelStat parses data into s, reusing s.cpus. It returns the first malformed line's error
// but keeps what it could read.
func parseKernelStat(data []byte, s *kernelStat) error {
	for i := range s.cpus {
		s.cpus[i] = cpuTimes{}
	}
	s.online = 0
	var firstErr error
	fail := func(line []byte) {
		if firstErr == nil {
			if len(line) > 80 {
				line = line[:80]
			}
			firstErr = fmt.Errorf("%w: %q", errStatFormat, line)
		}
	}
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		key, rest, _ := bytes.Cut(line, []byte{' '})
		switch {
		case len(key) > 3 && string(key[:3]) == "cpu":
			n, err := strconv.Atoi(string(key[3:]))
			if err != nil || n < 0 || n > 1<<16 {
				fail(line)
				continue
			}
			var v [10]uint64
			got := parseUints(rest, v[:])
			if got < 4 { // user nice system idle exist on every kernel; the rest came later
				fail(line)
				continue
			}
			for len(s.cpus) <= n {
				s.cpus = append(s.cpus, cpuTimes{})
			}
			if s.cpus[n].online {
				// The kernel lists each CPU once; a repeated line (a corrupt file) is not a
				// second online CPU.
				fail(line)
				continue
			}
			s.cpus[n] = cpuTimes{
				online: true,
				user:   float64(v[0]) / userHZ, nice: float64(v[1]) / userHZ,
				system: float64(v[2]) / userHZ, idle: float64(v[3]) / userHZ,
				iowait: float64(v[4]) / userHZ, irq: float64(v[5]) / userHZ,
				softirq: float64(v[6]) / userHZ, steal: float64(v[7]) / userHZ,
				guest: float64(v[8]) / userHZ, guestNice: float64(v[9]) / userHZ,
			}
			s.online++
		case string(key) == "intr":
			if !firstUint(rest, &s.intr) {
				fail(line)
			}
		case string(key) == "ctxt":
			if !firstUint(rest, &s.ctxt) {
				fail(line)
			}
		case string(key) == "btime":
			if !firstUint(rest, &s.btime) {
				fail(line)
			}
		case string(key) == "processes":
			if !firstUint(rest, &s.forks) {
				fail(line)
			}
		case string(key) == "procs_running":
			if !firstUint(rest, &s.procsRunning) {
				fail(line)
			}
		case string(key) == "procs_blocked":
			if !firstUint(rest, &s.procsBlocked) {
				fail(line)
			}
		}
	}
	return firstErr
}

// parseUints reads space-separated unsigned integers into v and returns how many it read; it stops
// at the first field that is not a number.
func parseUints(b []byte, v []uint64) int {
	n := 0
	for n < len(v) {
		for len(b) > 0 && b[0] == ' ' {
			b = b[1:]
		}
		if len(b) == 0 {
			break
		}
		var x uint64
		digits := 0
		for len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
			x = x*10 + uint64(b[0]-'0')
			b = b[1:]
			digits++
		}
		if digits == 0 || digits > 19 || (len(b) > 0 && b[0] != ' ') {
			break
		}
		v[n] = x
		n++
	}
	return n
}

func firstUint(b []byte, out *uint64) bool {
	var v [1]uint64
	if parseUints(b, v[:]) != 1 {
		return false
	}
	*out = v[0]
	return true
}
