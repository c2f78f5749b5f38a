package collector

import (
	"bytes"
	"errors"
	"fmt"
)

// The files under /proc are read every scrape by several collectors; these small parsers are shared
// so that each file format has one reading of it, and none allocates.

// nextLine splits data at its first newline: the line without it, and the rest.
func nextLine(data []byte) (line, rest []byte) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return data[:i], data[i+1:]
	}
	return data, nil
}

// parseDecimal reads an unsigned decimal number that must be all of b, refusing overflow.
func parseDecimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// parseBtime finds the "btime N" line of /proc/stat: the boot time in unix seconds.
func parseBtime(data []byte) (uint64, error) {
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		rest, ok := bytes.CutPrefix(line, []byte("btime "))
		if !ok {
			continue
		}
		v, ok := parseDecimal(bytes.TrimSpace(rest))
		if !ok {
			return 0, fmt.Errorf("malformed btime line %q", line)
		}
		return v, nil
	}
	return 0, errors.New("no btime line in stat")
}
