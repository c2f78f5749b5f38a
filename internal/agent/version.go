package agent

import (
	"runtime/debug"

	"github.com/prometheus/common/version"
)

func init() {
	// A `go build` or `go run` without -ldflags leaves version.Version empty; the module build info
	// still knows the VCS revision, which is better than nothing in a bug report.
	if version.Version != "" {
		return
	}
	version.Version = "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				version.Revision = s.Value
			case "vcs.time":
				version.BuildDate = s.Value
			}
		}
	}
}

func versionString() string { return version.Version }
