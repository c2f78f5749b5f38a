package agent

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/serversage/sage/internal/probe"
)

// MeshPeer is another agent this host probes: what the hub's peer list says of it.
type MeshPeer struct {
	HostID   string
	Name     string // the `target` label of its series
	Address  string // pinged
	AgentURL string // its agent's URL: the TCP probe connects to its host and port
}

// MeshPeers is the hub's answer: this host's peers and the token they present to its
// /throughput endpoint (and it to theirs).
type MeshPeers struct {
	MeshToken string
	Peers     []MeshPeer
}

// meshLoop fetches the peer list from the hub every probes.mesh.refresh and turns each peer
// into two scheduler targets in the "mesh" group: an ICMP round (module mesh_icmp) to its
// address and a TCP connect (mesh_tcp) to its agent's port. When a fetch fails the last list
// stays, so a hub outage does not stop the probing between hosts, which is when it matters.
type meshLoop struct {
	fetch  func(ctx context.Context) (MeshPeers, error)
	cfg    func() *probe.Config
	sched  *probe.Scheduler
	logger *slog.Logger
	token  atomic.Pointer[string]

	mu     sync.Mutex
	peers  []MeshPeer
	have   bool // a list was fetched
	failed bool // the last fetch failed, logged once until one succeeds

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func newMeshLoop(fetch func(context.Context) (MeshPeers, error), cfg func() *probe.Config, sched *probe.Scheduler, logger *slog.Logger) *meshLoop {
	return &meshLoop{fetch: fetch, cfg: cfg, sched: sched, logger: logger, kick: make(chan struct{}, 1)}
}

func (m *meshLoop) start(ctx context.Context) {
	ctx, m.cancel = context.WithCancel(ctx)
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		m.run(ctx)
	}()
}

func (m *meshLoop) stop() {
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
}

// reconfigure applies a reloaded configuration to the peers known, and fetches the list anew.
func (m *meshLoop) reconfigure() {
	m.apply()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *meshLoop) run(ctx context.Context) {
	for {
		cfg := m.cfg()
		if cfg.MeshEnabled(true) {
			fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			res, err := m.fetch(fctx)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				m.mu.Lock()
				first := !m.failed
				m.failed = true
				m.mu.Unlock()
				if first {
					m.logger.Warn("cannot fetch the mesh's peers from the hub; probing the last known", "err", err)
				}
			default:
				m.token.Store(&res.MeshToken)
				m.mu.Lock()
				if m.failed || !m.have || len(res.Peers) != len(m.peers) {
					m.logger.Info("mesh peers", "count", len(res.Peers))
				}
				m.peers, m.have, m.failed = res.Peers, true, false
				m.mu.Unlock()
			}
		}
		m.apply()
		refresh := cfg.Mesh.Refresh
		if refresh <= 0 {
			refresh = probe.DefaultMeshRefresh
		}
		t := time.NewTimer(refresh)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-m.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// apply sets the scheduler's mesh targets from the peers known and the configuration.
func (m *meshLoop) apply() {
	cfg := m.cfg()
	if !cfg.MeshEnabled(true) {
		m.sched.SetTargets("mesh", nil)
		return
	}
	m.mu.Lock()
	peers := m.peers
	m.mu.Unlock()
	token := ""
	if t := m.token.Load(); t != nil {
		token = *t
	}
	m.sched.SetTargets("mesh", meshTargets(cfg, peers, token))
}

// meshTargets turns peers into scheduler targets; token is the mesh token that the peers'
// /throughput endpoints accept.
func meshTargets(cfg *probe.Config, peers []MeshPeer, token string) []probe.ScheduledTarget {
	icmp, okI := cfg.Module(probe.MeshICMPModule)
	tcp, okT := cfg.Module(probe.MeshTCPModule)
	interval := cfg.Mesh.Interval
	if interval <= 0 {
		interval = probe.DefaultMeshInterval
	}
	withTCP := cfg.Mesh.TCP == nil || *cfg.Mesh.TCP
	var tput *probe.Module
	if tm, ok := cfg.Module(probe.MeshThroughputModule); ok && cfg.Mesh.ThroughputInterval > 0 && token != "" {
		c := *tm
		c.Throughput.BearerToken = probe.Secret{Inline: token}
		if cfg.Mesh.ThroughputSize > 0 {
			c.Throughput.SizeBytes = cfg.Mesh.ThroughputSize
		}
		tput = &c
	}
	names := map[string]int{}
	for _, p := range peers {
		names[p.Name]++
	}
	var out []probe.ScheduledTarget
	for _, p := range peers {
		name := p.Name
		if name == "" || names[name] > 1 {
			// Two hosts of one name would expose the same series: the host id tells them apart.
			name = p.Name + "#" + p.HostID
		}
		var agentHost, agentPort string
		if u, err := url.Parse(p.AgentURL); err == nil && u.Host != "" {
			agentHost, agentPort = u.Hostname(), u.Port()
			if agentPort == "" {
				agentPort = map[string]string{"https": "443"}[u.Scheme]
				if agentPort == "" {
					agentPort = "80"
				}
			}
		}
		addr := p.Address
		if addr == "" {
			addr = agentHost
		}
		if addr != "" && okI {
			out = append(out, probe.ScheduledTarget{Name: name, Target: addr, ModuleName: probe.MeshICMPModule,
				Module: icmp, Interval: interval})
		}
		if withTCP && agentHost != "" && okT {
			out = append(out, probe.ScheduledTarget{Name: name, Target: net.JoinHostPort(agentHost, agentPort),
				ModuleName: probe.MeshTCPModule, Module: tcp, Interval: interval})
		}
		if tput != nil && agentHost != "" {
			if u, err := url.Parse(p.AgentURL); err == nil {
				pull := url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/throughput"}
				out = append(out, probe.ScheduledTarget{Name: name, Target: pull.String(),
					ModuleName: probe.MeshThroughputModule, Module: tput, Interval: cfg.Mesh.ThroughputInterval})
			}
		}
	}
	return out
}
