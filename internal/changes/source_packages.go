package changes

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
)

func init() { register("packages", readPackages) }

// readPackages lists installed packages from dpkg's database, read directly (no dpkg-query: it
// is one file and parsing it is faster than starting a program), and from rpm when rpm is there.
func readPackages(ctx context.Context, e *env) (Objects, error) {
	objs := Objects{}
	found := false
	data, err := os.ReadFile(e.cfg.rootPath("/var/lib/dpkg/status"))
	switch {
	case err == nil:
		found = true
		for k, v := range ParseDpkgStatus(data) {
			objs[k] = Object{"version": v, "manager": "dpkg"}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("dpkg status: %w", err)
	}
	if rpm, err := exec.LookPath("rpm"); err == nil && e.cfg.RootPath == "" {
		out, err := exec.CommandContext(ctx, rpm, "-qa", "--qf", `%{NAME}\t%{ARCH}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n`).Output()
		if err != nil {
			return nil, fmt.Errorf("rpm -qa: %w", err)
		}
		found = true
		for k, v := range ParseRPMList(out) {
			objs[k] = Object{"version": v, "manager": "rpm"}
		}
	}
	if !found {
		return nil, fmt.Errorf("no dpkg database and no rpm: %w", ErrToolMissing)
	}
	return objs, nil
}

// ParseDpkgStatus returns name:arch -> version for the installed packages of a dpkg status file
// (deb822 stanzas; Status "install ok installed", or held, or half-configured and the like, whose
// files are on disk; "config-files" and "not-installed" are gone).
func ParseDpkgStatus(data []byte) map[string]string {
	out := map[string]string{}
	ParseDpkgStatusFiles(data, func(p DpkgPackage) {
		if installedStatus(p.Status) {
			out[p.Key()] = p.Version
		}
	})
	return out
}

func installedStatus(s string) bool {
	f := strings.Fields(s)
	if len(f) != 3 {
		return false
	}
	switch f[2] {
	case "installed", "half-configured", "unpacked", "triggers-awaited", "triggers-pending", "half-installed":
		return true
	}
	return false
}

// ParseRPMList reads `rpm -qa --qf 'NAME\tARCH\tEVR\n'` into name:arch -> version.
func ParseRPMList(data []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[0] == "" {
			continue
		}
		k := f[0]
		if f[1] != "" && f[1] != "(none)" {
			k += ":" + f[1]
		}
		if prev, ok := out[k]; ok && prev != f[2] {
			// Several versions of one package (kernels, gpg-pubkey) are separate objects.
			k += "@" + f[2]
		}
		out[k] = f[2]
	}
	return out
}
