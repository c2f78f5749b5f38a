// Package testenv lets integration tests find the real programs and services they run against.
// On a developer's machine a missing one skips the test with a message saying what to install; under
// CI (CI=true) a missing one fails the test, because a skipped integration test proves nothing.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// InCI reports whether the tests run under CI, where nothing may be skipped for want of a program.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test on a developer's machine, or fails it under CI, saying what is missing and
// how to get it.
func Missing(t testing.TB, what, hint string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is not available (CI=true, so this fails instead of skipping); %s", what, hint)
	}
	t.Skipf("%s is not available; %s", what, hint)
}

// LookPath returns the path of a program, or skips or fails the test (see Missing) when it is not
// installed; debianPackage names the Debian package that provides it.
func LookPath(t testing.TB, program, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		Missing(t, program, "install it with: apt-get install "+debianPackage)
	}
	return p
}

// Root skips or fails a test that needs root (writing /dev/kmsg, network namespaces).
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root", "run the tests as root to "+why)
	}
}

// ArtefactDir returns a directory, created if needed, where a test keeps what a person should be
// able to look at afterwards (screenshots): $SAGE_ARTEFACTS/<name>, or artifacts/<name> at the
// module's root, which git ignores and CI lists at the end.
func ArtefactDir(t testing.TB, name string) string {
	t.Helper()
	root := os.Getenv("SAGE_ARTEFACTS")
	if root == "" {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil || len(strings.TrimSpace(string(out))) == 0 {
			t.Fatalf("finding the module root for artefacts: %v", err)
		}
		root = filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "artifacts")
	}
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Alertmanager returns the path of Prometheus's Alertmanager: `alertmanager` as upstream names it,
// else `prometheus-alertmanager` as Debian does; it skips or fails the test (see Missing) when
// neither is installed.
func Alertmanager(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"alertmanager", "prometheus-alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Missing(t, "alertmanager", "install it with: apt-get install prometheus-alertmanager")
	return ""
}
