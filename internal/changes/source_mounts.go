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

func init() { register("mounts", readMounts) }

func readMounts(_ context.Context, e *env) (Objects, error) {
	data, err := os.ReadFile(filepath.Join(e.cfg.ProcPath, "self/mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return ParseMountinfo(data)
}

// ParseMountinfo reads proc(5)'s mountinfo into mount point -> device, fstype, source, options.
// A mount point mounted over keeps its key and the later mounts get "#2", "#3".
func ParseMountinfo(data []byte) (Objects, error) {
	objs := Objects{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 2 {
			return nil, fmt.Errorf("mountinfo line %d: malformed %q", n, line)
		}
		mp := unescapeMount(f[4])
		o := Object{"device": f[2], "root": unescapeMount(f[3]), "options": f[5], "fstype": g[0], "source": unescapeMount(g[1])}
		if len(g) > 2 {
			o["super_options"] = g[2]
		}
		key := mp
		for i := 2; objs[key] != nil; i++ {
			key = mp + "#" + strconv.Itoa(i)
		}
		objs[key] = o
	}
	return objs, sc.Err()
}

// unescapeMount undoes the kernel's octal escapes of space, tab, newline and backslash.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
