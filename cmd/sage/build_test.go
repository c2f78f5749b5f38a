package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent-only build, which monitored hosts run, must link none of the hub: the Prometheus
// server packages alone double an agent's resident memory (docs/benchmarks.md). The full build
// must have the hub's commands, and the agent-only one must not offer them.
func TestAgentOnlyBuild(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "agentonly", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"/internal/hub", "/internal/metricstore", "/internal/promapi", "/internal/web", "/internal/api", "/internal/inventory", "github.com/prometheus/prometheus/"} {
			if strings.Contains(pkg+"/", banned+"/") || strings.HasPrefix(pkg, banned) {
				t.Errorf("the agent-only build links %s", pkg)
			}
		}
	}
	bin := t.TempDir() + "/sage"
	if out, err := exec.Command("go", "build", "-tags", "agentonly", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags agentonly: %v\n%s", err, out)
	}
	usage, _ := exec.Command(bin, "help").CombinedOutput()
	for _, cmd := range []string{"hub", "up", "token"} {
		if strings.Contains(string(usage), "\n  "+cmd+" ") {
			t.Errorf("the agent-only build offers %q:\n%s", cmd, usage)
		}
	}
	if !strings.Contains(string(usage), "\n  agent ") {
		t.Errorf("the agent-only build lacks the agent:\n%s", usage)
	}
	for _, cmd := range []string{"agent", "hub", "up", "token", "version"} {
		if _, ok := commands[cmd]; !ok {
			t.Errorf("the full build lacks %q", cmd)
		}
	}
}
