package changes

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

func init() { register("firewall", readFirewall) }

// readFirewall records iptables and ip6tables rules one object per rule (key "iptables TABLE
// RULE"), so that adding one rule is one event saying which, and each chain's policy as an object
// of its own; and nftables's ruleset as one object whose change is shown as a text diff, because
// nft's rules live in nested blocks whose lines mean little out of context. Rule order within a
// chain is not compared (an object set has none): a reordering alone is not reported.
//
// On hosts where iptables is the nf_tables variant, the iptables rules also appear in nft's
// ruleset, so one change shows in both; each view is what its tool's users read.
func readFirewall(ctx context.Context, e *env) (Objects, error) {
	if e.cfg.RootPath != "" {
		return Objects{}, nil // fixture trees have no firewall; the parsers have their own tests
	}
	objs := Objects{}
	ran := 0
	for _, tool := range []struct{ name, prog string }{{"iptables", "iptables-save"}, {"ip6tables", "ip6tables-save"}} {
		path, err := exec.LookPath(tool.prog)
		if err != nil {
			continue
		}
		out, err := exec.CommandContext(ctx, path).Output()
		if err != nil {
			return nil, fmt.Errorf("%s: %w%s", tool.prog, err, stderrOf(err))
		}
		ran++
		for k, v := range ParseIptablesSave(tool.name, out) {
			objs[k] = v
		}
	}
	if path, err := exec.LookPath("nft"); err == nil {
		// -s (stateless) leaves out counters and quotas, which change with traffic.
		out, err := exec.CommandContext(ctx, path, "-s", "list", "ruleset").Output()
		if err != nil {
			return nil, fmt.Errorf("nft list ruleset: %w%s", err, stderrOf(err))
		}
		ran++
		objs["nft ruleset"] = Object{contentAttr: string(out), "lines": strconv.Itoa(strings.Count(string(out), "\n"))}
	}
	if ran == 0 {
		return nil, fmt.Errorf("no iptables-save, ip6tables-save or nft: %w", ErrToolMissing)
	}
	return objs, nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// ParseIptablesSave normalises iptables-save output into objects: comments (with their
// timestamps), COMMIT and packet/byte counters are dropped; each chain's policy is an object
// "TOOL TABLE :CHAIN" and each rule "TOOL TABLE RULE", a repeated rule getting "#2", "#3".
func ParseIptablesSave(tool string, data []byte) Objects {
	objs := Objects{}
	table := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line == "COMMIT" {
			continue
		}
		switch line[0] {
		case '*':
			table = line[1:]
			continue
		case ':':
			f := strings.Fields(line[1:])
			if len(f) == 0 {
				continue
			}
			policy := ""
			if len(f) > 1 {
				policy = f[1]
			}
			objs[tool+" "+table+" :"+f[0]] = Object{"policy": policy}
			continue
		case '[':
			if i := strings.IndexByte(line, ']'); i >= 0 {
				line = strings.TrimSpace(line[i+1:])
			}
		}
		f := strings.Fields(line)
		chain := ""
		if len(f) > 1 && (f[0] == "-A" || f[0] == "-I") {
			chain = f[1]
		}
		line = strings.Join(f, " ")
		key := tool + " " + table + " " + line
		for i := 2; objs[key] != nil; i++ {
			key = tool + " " + table + " " + line + " #" + strconv.Itoa(i)
		}
		objs[key] = Object{"table": table, "chain": chain}
	}
	return objs
}
