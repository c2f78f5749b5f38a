package changes

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
)

func init() { register("users", readUsers) }

// readUsers reads local users and groups from /etc/passwd and /etc/group (never the shadow files:
// password hashes are secrets and are not this monitor's business).
func readUsers(_ context.Context, e *env) (Objects, error) {
	pw, err := os.ReadFile(e.cfg.rootPath("/etc/passwd"))
	if err != nil {
		return nil, fmt.Errorf("passwd: %w", err)
	}
	gr, err := os.ReadFile(e.cfg.rootPath("/etc/group"))
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	objs := ParsePasswd(pw)
	for k, v := range ParseGroup(gr) {
		objs[k] = v
	}
	return objs, nil
}

// ParsePasswd reads passwd(5) into "user NAME" -> uid, gid, home, shell, gecos.
func ParsePasswd(data []byte) Objects {
	objs := Objects{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 7 || f[0] == "" || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], "+") || strings.HasPrefix(f[0], "-") {
			continue
		}
		objs["user "+f[0]] = Object{"uid": f[2], "gid": f[3], "gecos": f[4], "home": f[5], "shell": f[6]}
	}
	return objs
}

// ParseGroup reads group(5) into "group NAME" -> gid, members (sorted, comma separated).
func ParseGroup(data []byte) Objects {
	objs := Objects{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 4 || f[0] == "" || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], "+") || strings.HasPrefix(f[0], "-") {
			continue
		}
		var members []string
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		slices.Sort(members)
		members = slices.Compact(members)
		objs["group "+f[0]] = Object{"gid": f[2], "members": strings.Join(members, ",")}
	}
	return objs
}
