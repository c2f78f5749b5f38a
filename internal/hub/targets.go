package hub

import (
	"context"
	"fmt"
	"net/url"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/metricstore"
)

// hostLabels are the target labels of a host's series, scraped or remote-written: the client's
// slug (stable and label-friendly, unlike its display name), the site's name, the host's name.
func hostLabels(h inventory.Host, clients map[string]string, sites map[string]string) map[string]string {
	l := map[string]string{"client": clients[h.ClientID], "host": h.Name}
	if s := sites[h.SiteID]; s != "" {
		l["site"] = s
	}
	return l
}

// labelMaps returns client id -> slug and site id -> name.
func (h *Hub) labelMaps(ctx context.Context) (clients, sites map[string]string, err error) {
	cl, err := h.inv.ListClients(ctx, inventory.ClientFilter{})
	if err != nil {
		return nil, nil, err
	}
	st, err := h.inv.ListSites(ctx, inventory.SiteFilter{})
	if err != nil {
		return nil, nil, err
	}
	clients = make(map[string]string, len(cl))
	for _, c := range cl {
		clients[c.ID] = c.Slug
	}
	sites = make(map[string]string, len(st))
	for _, s := range st {
		sites[s.ID] = s.Name
	}
	return clients, sites, nil
}

// agentTarget turns a host's agent URL into a scrape target; a URL without a path means the
// agent's /metrics.
func agentTarget(agentURL string) (metricstore.Target, error) {
	u, err := url.Parse(agentURL)
	if err != nil {
		return metricstore.Target{}, err
	}
	if u.Port() == "" {
		return metricstore.Target{}, fmt.Errorf("agent URL %q has no port", agentURL)
	}
	t := metricstore.Target{Address: u.Host, Scheme: u.Scheme, MetricsPath: u.Path}
	if t.MetricsPath == "" || t.MetricsPath == "/" {
		t.MetricsPath = "/metrics"
	}
	return t, nil
}

// refreshTargets makes the scrape targets the active hosts that have an agent URL.
func (h *Hub) refreshTargets(ctx context.Context) error {
	targets, err := h.targets(ctx)
	if err != nil {
		return err
	}
	if err := h.metrics.SetTargets(ctx, map[string][]metricstore.Target{AgentJob: targets}); err != nil {
		return fmt.Errorf("hub: setting scrape targets: %w", err)
	}
	return nil
}

// targets lists the active hosts with an agent URL as scrape targets. A host whose URL cannot be
// a target is skipped (and logged) rather than blocking every other host.
func (h *Hub) targets(ctx context.Context) ([]metricstore.Target, error) {
	hosts, err := h.inv.ListHosts(ctx, inventory.HostFilter{Status: inventory.StatusActive})
	if err != nil {
		return nil, fmt.Errorf("hub: listing hosts for scraping: %w", err)
	}
	clients, sites, err := h.labelMaps(ctx)
	if err != nil {
		return nil, fmt.Errorf("hub: listing clients and sites for scraping: %w", err)
	}
	targets := make([]metricstore.Target, 0, len(hosts))
	for _, host := range hosts {
		if host.AgentURL == "" {
			continue
		}
		t, err := agentTarget(host.AgentURL)
		if err != nil {
			h.logger.Warn("host not scraped", "host", host.Name, "host_id", host.ID, "err", err)
			continue
		}
		t.Labels = hostLabels(host, clients, sites)
		targets = append(targets, t)
	}
	return targets, nil
}
