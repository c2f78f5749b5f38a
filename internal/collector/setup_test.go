package collector

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// realConfig is a configuration on this machine's real /proc and /sys, with defaults filled in.
func realConfig(t testing.TB) *Config {
	t.Helper()
	c := &Config{StateDir: t.TempDir()}
	c.withDefaults()
	return c
}

// fixtureConfig is a configuration whose /proc and /sys are the given fixture trees.
func fixtureConfig(t testing.TB, proc, sys string) *Config {
	t.Helper()
	c := &Config{ProcPath: proc, SysPath: sys, StateDir: t.TempDir()}
	c.withDefaults()
	return c
}

// writeTree creates files (path -> content) under a new temporary directory and returns it.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// updater adapts one Collector to prometheus.Collector, so that a pedantic registry checks what it
// emits (names, label consistency, duplicates) exactly as a scrape would.
type updater struct {
	c   Collector
	err error
}

func (u *updater) Describe(chan<- *prometheus.Desc) {}
func (u *updater) Collect(ch chan<- prometheus.Metric) {
	m := &Metrics{}
	u.err = u.c.Update(context.Background(), m)
	if u.err == nil {
		u.err = m.err
	}
	for i := range m.list {
		ch <- &m.list[i]
	}
}

// Families is a scrape's result by metric name.
type Families map[string]*dto.MetricFamily

// scrape runs one Update of c through a pedantic registry. It fails the test if the registry rejects
// what c emitted; the collector's own error is returned.
func scrape(t testing.TB, c Collector) (Families, error) {
	t.Helper()
	u := &updater{c: c}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(u)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("registry rejected the collector's metrics: %v", err)
	}
	fams := Families{}
	for _, mf := range mfs {
		fams[mf.GetName()] = mf
	}
	return fams, u.err
}

// Value returns the value of the sample of name whose labels include the given name/value pairs.
func (f Families) Value(name string, labels ...string) (float64, bool) {
	mf, ok := f[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// Count is how many samples name has whose labels include the given pairs.
func (f Families) Count(name string, labels ...string) int {
	n := 0
	for _, m := range f[name].GetMetric() {
		if hasLabels(m, labels) {
			n++
		}
	}
	return n
}

// Names lists the metric names, sorted.
func (f Families) Names() []string {
	var names []string
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == pairs[i] && lp.GetValue() == pairs[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

const nobodyEnv = "SAGE_TEST_AS_NOBODY"

// asNobody makes the calling test also run as an unprivileged user, because root reads files that
// no agent running as a service user could. Run as root, it re-executes the test binary for this
// test alone as uid/gid 65534, fails if that run fails, and returns true: the caller returns. Run
// as a non-root user (or in that child), it returns false and the test body runs.
func asNobody(t *testing.T) bool {
	t.Helper()
	if os.Getuid() != 0 || os.Getenv(nobodyEnv) == "1" {
		return false
	}
	// The test binary sits in a root-only build directory: copy it where nobody can run it.
	dir, err := os.MkdirTemp("", "sage-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "collector.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^"+strings.ReplaceAll(t.Name(), "/", "$/^")+"$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), nobodyEnv+"=1", "GOCOVERDIR=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as uid 65534: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("as uid 65534 the test did not pass:\n%s", out)
	}
	t.Logf("passed as uid 65534")
	return true
}

func ExampleNames() {
	fmt.Println(len(Names()) > 0)
	// Output: true
}
