package web

import (
	"cmp"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
)

// maxDownListed and maxApprovalListed bound the down hosts and the hosts awaiting approval the
// overview lists (each row is a dozen template actions); the rest are one click away.
const (
	maxDownListed     = 100
	maxApprovalListed = 25
)

type overviewData struct {
	base
	Total            int // hosts not retired
	Up               int
	Down             int
	Pending          int
	Unmonitored      int
	Retired          int
	Awaiting         int       // hosts awaiting approval
	AwaitingApproval []hostRef // the first maxApprovalListed of them, by name
	MoreAwaiting     int
	DownHosts        []downHost
	MoreDown         int
	Hot              []hotHost
	Clients          int
}

// hotThreshold is the usage (CPU, memory or the fullest disk) from which an up host is listed
// as running hot: the level at which the bars turn amber is too common to list, this one is not.
const hotThreshold = 0.85

// maxHotListed bounds the hot hosts the overview lists, the hottest first.
const maxHotListed = 15

type hotHost struct {
	ID, Name, Client string
	Health           hosthealth.Health
	peak             float64
}

type downHost struct {
	ID, Name, Client string
	Error            string
	LastScrape       time.Time
}

type hostRef struct {
	ID, Name, Client string
}

func (u *UI) overview(w http.ResponseWriter, r *http.Request) error {
	d, err := u.overviewData(r, "Overview")
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "overview", d)
	return nil
}

func (u *UI) overviewLive(w http.ResponseWriter, r *http.Request) error {
	d, err := u.overviewData(r, "Overview")
	if err != nil {
		return err
	}
	u.renderFragment(w, "overview", "live", d)
	return nil
}

// overviewData sums up every host's state: one light query over all hosts and a map lookup of
// each one's health, which stays in milliseconds with thousands of hosts.
func (u *UI) overviewData(r *http.Request, title string) (overviewData, error) {
	d := overviewData{base: u.base(r, title, "overview")}
	refs, err := u.inv.ListHostRefs(r.Context(), inventory.HostFilter{})
	if err != nil {
		return d, err
	}
	clients, err := u.inv.ListClientNames(r.Context())
	if err != nil {
		return d, err
	}
	d.Clients = len(clients)
	names := make(map[string]string, len(clients))
	for _, c := range clients {
		names[c.ID] = c.Name
	}
	healthOf := u.healthLookup()
	for _, h := range refs {
		if h.Status == inventory.StatusRetired {
			d.Retired++
			continue
		}
		d.Total++
		if h.Status == inventory.StatusPending {
			d.Awaiting++
			if len(d.AwaitingApproval) < maxApprovalListed {
				d.AwaitingApproval = append(d.AwaitingApproval, hostRef{ID: h.ID, Name: h.Name, Client: names[h.ClientID]})
			}
		}
		hh := healthOf(h.ClientSlug, h.Name)
		switch hh.State() {
		case "up":
			d.Up++
			if p := peak(hh); p >= hotThreshold {
				d.Hot = append(d.Hot, hotHost{ID: h.ID, Name: h.Name, Client: names[h.ClientID], Health: hh, peak: p})
			}
		case "down":
			d.Down++
			if len(d.DownHosts) < maxDownListed {
				d.DownHosts = append(d.DownHosts, downHost{ID: h.ID, Name: h.Name, Client: names[h.ClientID], Error: hh.LastError, LastScrape: hh.LastScrape})
			} else {
				d.MoreDown++
			}
		case "pending":
			d.Pending++
		default:
			d.Unmonitored++
		}
	}
	d.MoreAwaiting = d.Awaiting - len(d.AwaitingApproval)
	// By client and name, so the list stays put from one refresh to the next.
	slices.SortStableFunc(d.DownHosts, func(a, b downHost) int {
		return cmp.Or(cmp.Compare(a.Client, b.Client), cmp.Compare(a.Name, b.Name))
	})
	slices.SortStableFunc(d.Hot, func(a, b hotHost) int { return cmp.Compare(b.peak, a.peak) })
	if len(d.Hot) > maxHotListed {
		d.Hot = d.Hot[:maxHotListed]
	}
	return d, nil
}

// peak is the highest of a host's known usage fractions.
func peak(h hosthealth.Health) float64 {
	p := math.Inf(-1)
	for _, v := range []float64{h.CPU, h.Memory, h.Disk} {
		if !math.IsNaN(v) {
			p = max(p, v)
		}
	}
	return p
}

// healthOf returns a host's health, or "unmonitored" with unknown usage without a tracker.
func (u *UI) healthOf(clientSlug, host string) hosthealth.Health {
	return u.healthLookup()(clientSlug, host)
}

// healthLookup is healthOf for a page that reads many hosts' health (hosthealth's Lookup).
func (u *UI) healthLookup() func(clientSlug, host string) hosthealth.Health {
	if u.health == nil {
		nan := math.NaN()
		return func(string, string) hosthealth.Health {
			return hosthealth.Health{CPU: nan, Memory: nan, Disk: nan, Load1: nan, Cores: nan}
		}
	}
	get := u.health.Lookup()
	return func(clientSlug, host string) hosthealth.Health {
		return get(hosthealth.Key{Client: clientSlug, Host: host})
	}
}
