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

func init() { register("os", readOS) }

// readOS reads the kernel release (/proc/sys/kernel/osrelease, what uname -r prints) and the
// distribution's /etc/os-release.
func readOS(_ context.Context, e *env) (Objects, error) {
	objs := Objects{}
	rel, err := os.ReadFile(filepath.Join(e.cfg.ProcPath, "sys/kernel/osrelease"))
	if err != nil {
		return nil, fmt.Errorf("kernel release: %w", err)
	}
	objs["kernel"] = Object{"release": strings.TrimSpace(string(rel))}
	data, err := os.ReadFile(e.cfg.rootPath("/etc/os-release"))
	if err != nil {
		data, err = os.ReadFile(e.cfg.rootPath("/usr/lib/os-release"))
	}
	if err != nil {
		return nil, fmt.Errorf("os-release: %w", err)
	}
	kv := ParseOSRelease(data)
	objs["os"] = Object{"pretty_name": kv["PRETTY_NAME"], "version_id": kv["VERSION_ID"], "id": kv["ID"]}
	return objs, nil
}

// ParseOSRelease reads os-release(5): KEY=value lines, values optionally quoted with shell escapes.
func ParseOSRelease(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			if v[0] == '"' {
				if u, err := strconv.Unquote(v); err == nil {
					v = u
				} else {
					v = v[1 : len(v)-1]
				}
			} else {
				v = v[1 : len(v)-1]
			}
		}
		out[k] = v
	}
	return out
}
