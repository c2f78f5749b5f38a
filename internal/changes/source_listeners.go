package changes

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/serversage/sage/internal/sockdiag"
)

func init() { register("listeners", readListeners) }

// readListeners lists listening TCP and bound UDP sockets through sock_diag with the names of the
// processes holding them. UDP sockets on ports of the ephemeral range are left out: they are
// clients' sockets (resolvers, NTP queries) that come and go, not services.
func readListeners(ctx context.Context, e *env) (Objects, error) {
	if e.cfg.RootPath != "" {
		return Objects{}, nil
	}
	r := sockdiag.NewReader()
	defer r.Close()
	socks, err := r.Listening(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	lo, hi := ephemeralRange(e.cfg.ProcPath)
	owners := socketOwners(ctx, e.cfg.ProcPath, socks)
	objs := Objects{}
	for _, s := range socks {
		proto := "tcp"
		if s.Proto == unix.IPPROTO_UDP {
			proto = "udp"
			if int(s.Port) >= lo && int(s.Port) <= hi {
				continue
			}
		}
		key := proto + " " + netip.AddrPortFrom(s.Addr, s.Port).String()
		o := objs[key]
		if o == nil {
			o = Object{"process": ""}
			objs[key] = o
		}
		if name := owners[s.Inode]; name != "" {
			names := strings.Split(o["process"], ",")
			if o["process"] == "" {
				names = nil
			}
			if !slices.Contains(names, name) {
				names = append(names, name)
				slices.Sort(names)
				o["process"] = strings.Join(names, ",")
			}
		}
	}
	return objs, nil
}

func ephemeralRange(proc string) (int, int) {
	data, err := os.ReadFile(filepath.Join(proc, "sys/net/ipv4/ip_local_port_range"))
	if err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil {
				return lo, hi
			}
		}
	}
	return 32768, 60999
}

// socketOwners maps socket inodes to the comm of a process holding them, by reading
// /proc/PID/fd links; processes that vanish or deny access are passed over.
func socketOwners(ctx context.Context, proc string, socks []sockdiag.Socket) map[uint32]string {
	want := make(map[uint32]bool, len(socks))
	for _, s := range socks {
		want[s.Inode] = true
	}
	out := map[uint32]string{}
	pids, err := os.ReadDir(proc)
	if err != nil {
		return out
	}
	for _, p := range pids {
		if ctx.Err() != nil || len(out) == len(want) {
			break
		}
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		fdDir := filepath.Join(proc, p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(link[len("socket:["):], "]"), 10, 32)
			if err != nil || !want[uint32(ino)] || out[uint32(ino)] != "" {
				continue
			}
			comm, _ := os.ReadFile(filepath.Join(proc, p.Name(), "comm"))
			out[uint32(ino)] = strings.TrimSpace(string(comm))
		}
	}
	return out
}
