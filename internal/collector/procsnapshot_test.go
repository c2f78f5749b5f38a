package collector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// sampleValue is the value of the first sample of name in m whose label values are labels.
func sampleValue(m *Metrics, name string, labels ...string) (float64, bool) {
next:
	for _, s := range m.list {
		if s.desc.name != name || len(s.labels) < len(labels) {
			continue
		}
		for i, v := range labels {
			if s.labels[i].GetValue() != v {
				continue next
			}
		}
		return s.value, true
	}
	return 0, false
}

// procCounts runs processes and process_groups (one group matching comm "app") under ctx and
// returns the process count each saw.
func procCounts(t *testing.T, ctx context.Context, procs, groups Collector) (float64, float64, error) {
	t.Helper()
	var mp, mg Metrics
	if err := procs.Update(ctx, &mp); err != nil {
		return 0, 0, err
	}
	if err := groups.Update(ctx, &mg); err != nil {
		return 0, 0, err
	}
	np, ok1 := sampleValue(&mp, namespace+"_processes_pids")
	ng, ok2 := sampleValue(&mg, namespace+"_process_group_processes", "app")
	if !ok1 || !ok2 {
		t.Fatalf("missing counts: processes %v, group %v", ok1, ok2)
	}
	return np, ng, nil
}

func newProcPair(t *testing.T, root string) (Collector, Collector) {
	t.Helper()
	cfg := groupsConfig(t, root, group("app", ProcessMatch{Comm: "app"}))
	p, err := newProcesses(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := newProcessGroups(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, g
}

// Within a scrape both collectors see one walk of /proc; a new scrape, or a call outside any
// scrape, walks again.
func TestProcSnapshotShared(t *testing.T) {
	root := procTree(t, fakeProc{pid: 10, comm: "app", state: 'S', threads: 1})
	procs, groups := newProcPair(t, root)
	add := func(pid int) { writeFakeProc(t, root, fakeProc{pid: pid, comm: "app", state: 'S', threads: 1}) }

	ctx := withScrapeNumber(t.Context())
	var mp, mg Metrics
	if err := procs.Update(ctx, &mp); err != nil {
		t.Fatal(err)
	}
	add(11) // after the scrape's walk: neither collector of this scrape sees it
	if err := groups.Update(ctx, &mg); err != nil {
		t.Fatal(err)
	}
	np, _ := sampleValue(&mp, namespace+"_processes_pids")
	ng, _ := sampleValue(&mg, namespace+"_process_group_processes", "app")
	if np != 1 || ng != 1 {
		t.Errorf("one scrape: processes %v, group %v; want both 1 (one walk)", np, ng)
	}

	if np, ng, err := procCounts(t, withScrapeNumber(t.Context()), procs, groups); err != nil || np != 2 || ng != 2 {
		t.Errorf("next scrape: processes %v, group %v, err %v; want 2, 2", np, ng, err)
	}

	// Outside a scrape each call walks.
	var m1, m2 Metrics
	if err := procs.Update(t.Context(), &m1); err != nil {
		t.Fatal(err)
	}
	add(12)
	if err := groups.Update(t.Context(), &m2); err != nil {
		t.Fatal(err)
	}
	np, _ = sampleValue(&m1, namespace+"_processes_pids")
	ng, _ = sampleValue(&m2, namespace+"_process_group_processes", "app")
	if np != 2 || ng != 3 {
		t.Errorf("outside a scrape: processes %v, group %v; want 2, 3", np, ng)
	}
}

// A walk cut short by one collector's deadline must not fail the other collectors of the scrape.
func TestProcSnapshotCancelledNotShared(t *testing.T) {
	var fps []fakeProc
	for i := range 2 * procPIDCheckEvery {
		fps = append(fps, fakeProc{pid: 10 + i, comm: "app", state: 'S', threads: 1})
	}
	root := procTree(t, fps...)
	procs, groups := newProcPair(t, root)

	ctx := withScrapeNumber(t.Context())
	cut, cancel := context.WithCancel(ctx) // the same scrape, a shorter deadline
	cancel()
	m := &Metrics{}
	if err := procs.Update(cut, m); err == nil {
		t.Fatal("a cancelled walk succeeded")
	}
	if _, ok := sampleValue(m, namespace+"_processes_pids"); ok {
		t.Error("a cancelled walk reported a count")
	}
	if np, ng, err := procCounts(t, ctx, procs, groups); err != nil || np != float64(len(fps)) || ng != float64(len(fps)) {
		t.Errorf("after another collector's cancelled walk: processes %v, group %v, err %v; want %d", np, ng, err, len(fps))
	}
}

// Overlapping scrapes, each running both collectors at once, as the agent does when scraped by
// two servers: every collector must see a whole walk (run with -race).
func TestProcSnapshotConcurrent(t *testing.T) {
	var fps []fakeProc
	for i := range 300 {
		fps = append(fps, fakeProc{pid: 10 + i, comm: fmt.Sprintf("app%d", i%2)[:3+i%2], state: 'S', threads: 2, fds: 1})
	}
	root := procTree(t, fps...)
	var apps float64
	for _, p := range fps {
		if p.comm == "app" {
			apps++
		}
	}
	procs, groups := newProcPair(t, root)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				ctx := withScrapeNumber(t.Context())
				var inner sync.WaitGroup
				var mp, mg Metrics
				var ep, eg error
				inner.Go(func() { ep = procs.Update(ctx, &mp) })
				inner.Go(func() { eg = groups.Update(ctx, &mg) })
				inner.Wait()
				np, _ := sampleValue(&mp, namespace+"_processes_pids")
				nt, _ := sampleValue(&mp, namespace+"_processes_threads")
				ng, _ := sampleValue(&mg, namespace+"_process_group_processes", "app")
				if ep != nil || eg != nil || np != float64(len(fps)) || nt != 2*float64(len(fps)) || ng != apps {
					t.Errorf("processes %v threads %v group %v, errs %v %v; want %d %d %v",
						np, nt, ng, ep, eg, len(fps), 2*len(fps), apps)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A process that exits between the walk and process_groups' reads of its files counts as it did
// when its stat was read, without its fds.
func TestProcSnapshotExitedBeforeVisit(t *testing.T) {
	root := procTree(t,
		fakeProc{pid: 10, comm: "app", state: 'S', threads: 1, fds: 2},
		fakeProc{pid: 11, comm: "app", state: 'S', threads: 1, fds: 3})
	procs, groups := newProcPair(t, root)
	ctx := withScrapeNumber(t.Context())
	if err := procs.Update(ctx, &Metrics{}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "11")); err != nil {
		t.Fatal(err)
	}
	m := &Metrics{}
	if err := groups.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	n, _ := sampleValue(m, namespace+"_process_group_processes", "app")
	fds, ok := sampleValue(m, namespace+"_process_group_open_fds", "app")
	if n != 2 || !ok || fds != 2 {
		t.Errorf("count %v, fds %v (%v); want 2 and 2", n, fds, ok)
	}
}
