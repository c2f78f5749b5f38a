package probe

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkICMPLoopback measures single-packet ICMP probes per second through the shared engine,
// to loopback addresses across 127.0.0.0/8, run as the prober's callers run them.
//
//	go test -run '^$' -bench ICMPLoopback -cpu 1,2 ./internal/probe/
func BenchmarkICMPLoopback(b *testing.B) {
	if unix.Geteuid() != 0 {
		b.Skip("needs root for raw ICMP sockets")
	}
	m := &Module{Prober: "icmp", ICMP: ICMPModule{IPProtocol: IPProtocol{Preferred: "ip4"}}}
	var next atomic.Uint32
	var failed atomic.Int64
	cpu0 := cpuTime()
	start := time.Now()
	b.SetParallelism(32) // the scheduler runs many probes at once
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			target := fmt.Sprintf("127.%d.%d.%d", 1+i>>16&0x3f, i>>8&0xff, 1+i&0x7f)
			if r := Run(context.Background(), target, m, time.Second, nil); !r.Success {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	wall := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/wall, "probes/s")
	b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "probes/cpu-s")
	if f := failed.Load(); f > 0 {
		b.Errorf("%d of %d probes failed", f, b.N)
	}
}

// BenchmarkICMPScale5000 holds 5,000 targets (127.0.0.0/8 addresses) at one single-packet round
// per second each, spread evenly over the second as a scheduler would, for 10 s, and reports
// the process's CPU use in cores (user + system, which on loopback includes the kernel's work
// of answering the echo requests) and the share of rounds that failed.
//
//	go test -run '^$' -bench ICMPScale5000 -benchtime 1x ./internal/probe/
func BenchmarkICMPScale5000(b *testing.B) {
	if unix.Geteuid() != 0 {
		b.Skip("needs root for raw ICMP sockets")
	}
	const (
		targets  = 5000
		interval = time.Second
		duration = 10 * time.Second
	)
	m := &Module{Prober: "icmp", ICMP: ICMPModule{IPProtocol: IPProtocol{Preferred: "ip4"}}}
	// Open the engine before measuring.
	Run(context.Background(), "127.0.0.1", m, time.Second, nil)
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), duration)
		var rounds, failed atomic.Int64
		var reasonsMu sync.Mutex
		reasons := map[string]int{}
		var wg sync.WaitGroup
		cpu0 := cpuTime()
		start := time.Now()
		for i := range targets {
			target := fmt.Sprintf("127.1.%d.%d", i/250, 1+i%250)
			wg.Go(func() {
				t := time.NewTimer(time.Duration(i) * interval / targets)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					t.Reset(interval)
					r := Run(ctx, target, m, interval, nil)
					if ctx.Err() != nil {
						return // cut by the end of the run, not a result
					}
					rounds.Add(1)
					if !r.Success {
						failed.Add(1)
						reasonsMu.Lock()
						reasons[string(r.Reason)+": "+r.Detail]++
						reasonsMu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		cancel()
		wall := time.Since(start).Seconds()
		cpu := (cpuTime() - cpu0).Seconds()
		b.ReportMetric(cpu/wall, "cores")
		b.ReportMetric(float64(rounds.Load())/wall, "rounds/s")
		b.ReportMetric(float64(failed.Load())/float64(max(rounds.Load(), 1)), "failed-ratio")
		var drops uint32
		defaultICMPPool.mu.Lock()
		for _, e := range defaultICMPPool.engines {
			drops += e.drops.Load()
		}
		defaultICMPPool.mu.Unlock()
		b.ReportMetric(float64(drops), "socket-drops")
		if len(reasons) > 0 {
			b.Logf("failures: %v", reasons)
		}
	}
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkICMPScheduler5000 is the agent's case: the Scheduler with 5,000 ICMP targets
// (127.1.x.y) at a 1 s interval, rounds of 1 request and of 5 requests 200 ms apart, for 10 s
// after a 3 s warm-up. It reports the cores used, the share of runs skipped because the previous
// round still ran, failed probes and packets without a reply (on loopback every packet is
// answered, so both should be 0), and the replies dropped on a full socket queue. Run it as the
// agent runs, on one thread:
//
//	go test -run '^$' -bench ICMPScheduler5000 -benchtime 1x -cpu 1 ./internal/probe/
func BenchmarkICMPScheduler5000(b *testing.B) {
	if unix.Geteuid() != 0 {
		b.Skip("needs root for raw ICMP sockets")
	}
	for _, count := range []int{1, 5} {
		b.Run(fmt.Sprintf("count=%d", count), func(b *testing.B) {
			const (
				n      = 5000
				warmup = 3 * time.Second
				window = 10 * time.Second
			)
			m := &Module{Prober: "icmp", ICMP: ICMPModule{IPProtocol: IPProtocol{Preferred: "ip4"},
				Count: count, Interval: 200 * time.Millisecond}}
			Run(context.Background(), "127.0.0.1", m, time.Second, nil) // open the engine first
			list := make([]ScheduledTarget, n)
			for i := range list {
				name := fmt.Sprintf("127.1.%d.%d", i/250, 1+i%250)
				list[i] = ScheduledTarget{Name: name, Target: name, ModuleName: "icmp", Module: m, Interval: time.Second}
			}
			sum := func(s *Scheduler) (runs, skipped, failed, sent, received uint64) {
				for _, t := range s.targets() {
					t.mu.Lock()
					runs += t.runs
					skipped += t.skipped
					for _, f := range t.failures {
						failed += f
					}
					sent += t.sent
					received += t.received
					t.mu.Unlock()
				}
				return
			}
			drops := func() (d uint32) {
				defaultICMPPool.mu.Lock()
				defer defaultICMPPool.mu.Unlock()
				for _, e := range defaultICMPPool.engines {
					d += e.drops.Load()
				}
				return d
			}
			for range b.N {
				s := NewScheduler(SchedulerOptions{Concurrency: 6000})
				s.SetTargets("config", list)
				s.Start(context.Background())
				time.Sleep(warmup)
				runs0, skipped0, failed0, sent0, received0 := sum(s)
				drops0 := drops()
				cpu0, start := cpuTime(), time.Now()
				time.Sleep(window)
				runs1, skipped1, failed1, sent1, received1 := sum(s)
				wall, cpu := time.Since(start).Seconds(), (cpuTime() - cpu0).Seconds()
				drops1 := drops()
				var durations []time.Duration // of each target's last round
				for _, st := range s.Status() {
					if st.Last != nil {
						durations = append(durations, st.Last.Duration)
					}
				}
				s.Stop()
				if len(durations) > 0 {
					slices.Sort(durations)
					b.ReportMetric(float64(durations[len(durations)/2].Microseconds())/1000, "round-p50-ms")
					b.ReportMetric(float64(durations[len(durations)*99/100].Microseconds())/1000, "round-p99-ms")
					b.ReportMetric(float64(durations[len(durations)-1].Microseconds())/1000, "round-max-ms")
				}
				b.ReportMetric(cpu/wall, "cores")
				b.ReportMetric(float64(runs1-runs0)/wall, "rounds/s")
				b.ReportMetric(float64(skipped1-skipped0)/float64(max(runs1-runs0+skipped1-skipped0, 1)), "skipped-ratio")
				b.ReportMetric(float64(failed1-failed0), "failed")
				b.ReportMetric(float64((sent1-sent0)-(received1-received0)), "unanswered")
				b.ReportMetric(float64(drops1-drops0), "socket-drops")
			}
		})
	}
}
