package web

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
)

// hostsPerPage is one screenful of the hosts table.
const hostsPerPage = 50

// healthStates are the values of the hosts page's health filter, as hosthealth.Health.State.
var healthStates = []string{"up", "down", "pending", "unmonitored"}

// hostsQuery is the hosts page's filter and page, from and to its URL.
type hostsQuery struct {
	Client string // client id
	Status string // lifecycle: pending, active, retired
	Health string // up, down, pending, unmonitored
	Q      string // name contains
	Page   int    // from 1
}

func parseHostsQuery(v url.Values) hostsQuery {
	q := hostsQuery{
		Client: strings.TrimSpace(v.Get("client")),
		Q:      strings.TrimSpace(v.Get("q")),
		Page:   1,
	}
	if s := inventory.Status(v.Get("status")); slices.Contains(inventory.Statuses, s) {
		q.Status = string(s)
	}
	if h := v.Get("health"); slices.Contains(healthStates, h) {
		q.Health = h
	}
	if n, err := strconv.Atoi(v.Get("page")); err == nil && n > 1 {
		q.Page = n
	}
	// Neither is longer in a real request; they key the inventory's listing cache.
	if len(q.Q) > 200 {
		q.Q = strings.ToValidUTF8(q.Q[:200], "")
	}
	if len(q.Client) > 200 {
		q.Client = strings.ToValidUTF8(q.Client[:200], "")
	}
	return q
}

func (q hostsQuery) values(page int) url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"client": q.Client, "status": q.Status, "health": q.Health, "q": q.Q} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	return v
}

func withQuery(p string, v url.Values) string {
	if len(v) == 0 {
		return p
	}
	return p + "?" + v.Encode()
}

// Filtered reports whether any filter is set.
func (q hostsQuery) Filtered() bool {
	return q.Client != "" || q.Status != "" || q.Health != "" || q.Q != ""
}

type hostRow struct {
	Host       inventory.HostSummary
	ClientName string
	SiteName   string
	Health     hosthealth.Health
	State      string
}

type hostsTable struct {
	Rows             []hostRow
	RowsHTML         template.HTML // Rows as table rows (hostRowsHTML)
	Total            int
	Page, Pages      int
	From, To         int
	PrevURL, NextURL string
	TableURL         string
	Refresh          int
	Filtered         bool
}

type hostsData struct {
	base
	Query    hostsQuery
	Clients  []option
	Statuses []option
	Healths  []option
	Table    hostsTable
}

func (u *UI) hostList(w http.ResponseWriter, r *http.Request) error {
	q := parseHostsQuery(r.URL.Query())
	clients, err := u.inv.ListClientNames(r.Context())
	if err != nil {
		return err
	}
	table, err := u.hostsTable(r.Context(), q, clients)
	if err != nil {
		return err
	}
	d := hostsData{base: u.base(r, "Hosts", "hosts"), Query: q, Table: table}
	d.Clients = make([]option, 0, len(clients)+1)
	d.Clients = append(d.Clients, option{Value: "", Label: "All clients"})
	for _, c := range clients {
		d.Clients = append(d.Clients, option{Value: c.ID, Label: c.Name})
	}
	d.Statuses = lifecycleFilterOptions
	d.Healths = healthOptions
	u.render(w, r, http.StatusOK, "hosts", d)
	return nil
}

var (
	lifecycleFilterOptions = []option{{"", "Any lifecycle", ""}, {"pending", "Awaiting approval", ""}, {"active", "Active", ""}, {"retired", "Retired", ""}}
	healthOptions          = func() []option {
		o := []option{{"", "Any health", ""}}
		for _, s := range healthStates {
			o = append(o, option{Value: s, Label: stateLabel(s)})
		}
		return o
	}()
)

// hostTable is the hosts table alone, which the page polls to stay live.
func (u *UI) hostTable(w http.ResponseWriter, r *http.Request) error {
	q := parseHostsQuery(r.URL.Query())
	var clients []inventory.ClientName
	if q.Health != "" {
		var err error
		if clients, err = u.inv.ListClientNames(r.Context()); err != nil {
			return err
		}
	}
	table, err := u.hostsTable(r.Context(), q, clients)
	if err != nil {
		return err
	}
	u.renderFragment(w, "hosts", "hosts-table", table)
	return nil
}

// hostsTable reads one page of hosts: one count and one page query, with the client's and
// site's names joined. Filtered by health, which only the tracker knows, the tracker names the
// hosts that have a scrape target in that state (up, down, pending; unmonitored: none), and the
// database restricts to (or excludes) those by client and name; clients (needed only then) maps
// the tracker's client slugs to ids.
func (u *UI) hostsTable(ctx context.Context, q hostsQuery, clients []inventory.ClientName) (hostsTable, error) {
	t := hostsTable{Refresh: refreshSeconds(u.interval), Filtered: q.Filtered()}
	f := inventory.HostFilter{ClientID: q.Client, Status: inventory.Status(q.Status), NameContains: q.Q}
	var set *inventory.HostSet
	if q.Health != "" {
		set = u.healthSet(q.Health, clients)
	}
	var (
		hosts []inventory.HostSummary
		page  int
		err   error
	)
	if set != nil && len(set.Keys) > inventory.MaxHostSetKeys {
		hosts, t.Total, page, err = u.healthPageByRefs(ctx, f, q)
	} else {
		if t.Total, err = u.inv.CountHostsIn(ctx, f, set); err != nil {
			return t, err
		}
		page = clampPage(q.Page, t.Total)
		f.Page = inventory.Page{Limit: hostsPerPage, Offset: (page - 1) * hostsPerPage}
		hosts, err = u.inv.ListHostSummaries(ctx, f, set)
	}
	if err != nil {
		return t, err
	}
	t.Rows = u.hostRows(hosts)
	t.RowsHTML = hostRowsHTML(t.Rows)
	t.Page = page
	t.Pages = max((t.Total+hostsPerPage-1)/hostsPerPage, 1)
	if t.Total > 0 {
		t.From = (page-1)*hostsPerPage + 1
		t.To = t.From + len(t.Rows) - 1
	}
	if page > 1 {
		t.PrevURL = withQuery("/hosts", q.values(page-1))
	}
	if page < t.Pages {
		t.NextURL = withQuery("/hosts", q.values(page+1))
	}
	t.TableURL = withQuery("/hosts/_table", q.values(page))
	return t, nil
}

// healthSet is the set of hosts in the health state: those whose target is in it, or for
// "unmonitored" all but those with a target.
func (u *UI) healthSet(state string, clients []inventory.ClientName) *inventory.HostSet {
	set := &inventory.HostSet{Exclude: state == "unmonitored"}
	if u.health == nil {
		return set // no targets: every host is unmonitored
	}
	ids := make(map[string]string, len(clients))
	for _, c := range clients {
		ids[c.Slug] = c.ID
	}
	u.health.TargetStates(func(k hosthealth.Key, s string) {
		if id, ok := ids[k.Client]; ok && (set.Exclude || s == state) {
			set.Keys = append(set.Keys, inventory.HostKey{ClientID: id, Name: k.Host})
		}
	})
	return set
}

// healthPageByRefs is the health filter for more scrape targets than a HostSet can name: every
// host f selects is read (light rows), its state looked up, and the page's hosts fetched by key.
func (u *UI) healthPageByRefs(ctx context.Context, f inventory.HostFilter, q hostsQuery) ([]inventory.HostSummary, int, int, error) {
	refs, err := u.inv.ListHostRefs(ctx, f)
	if err != nil {
		return nil, 0, 0, err
	}
	var match []inventory.HostRef
	healthOf := u.healthLookup()
	for _, h := range refs {
		if healthOf(h.ClientSlug, h.Name).State() == q.Health {
			match = append(match, h)
		}
	}
	page := clampPage(q.Page, len(match))
	lo := min((page-1)*hostsPerPage, len(match))
	hi := min(lo+hostsPerPage, len(match))
	set := &inventory.HostSet{}
	for _, h := range match[lo:hi] {
		set.Keys = append(set.Keys, inventory.HostKey{ClientID: h.ClientID, Name: h.Name})
	}
	hosts, err := u.inv.ListHostSummaries(ctx, f, set)
	return hosts, len(match), page, err
}

func clampPage(page, total int) int {
	last := max((total+hostsPerPage-1)/hostsPerPage, 1)
	return min(max(page, 1), last)
}

// hostRows adds to each host its health.
func (u *UI) hostRows(hosts []inventory.HostSummary) []hostRow {
	rows := make([]hostRow, len(hosts))
	healthOf := u.healthLookup()
	for i, h := range hosts {
		hh := healthOf(h.ClientSlug, h.Name)
		rows[i] = hostRow{Host: h, ClientName: h.ClientName, SiteName: h.SiteName, Health: hh, State: hh.State()}
	}
	return rows
}

type hostData struct {
	base
	Host     inventory.Host
	Client   inventory.Client
	SiteName string
	Services []inventory.Service
	Live     hostLive
	Charts   chartsView
	// Changes is the latest few change events, nil when the hub keeps none (changes.go).
	Changes *recentChanges
}

// hostLive is the health block of a host page, refreshed every scrape interval.
type hostLive struct {
	HostID  string
	Status  inventory.Status
	Health  hosthealth.Health
	State   string
	URL     string
	Refresh int
}

func (u *UI) hostPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	h, err := u.inv.GetHost(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	c, err := u.inv.GetClient(ctx, h.ClientID)
	if err != nil {
		return err
	}
	d := hostData{base: u.base(r, h.Name, "hosts"), Host: h, Client: c}
	if h.SiteID != "" {
		s, err := u.inv.GetSite(ctx, h.SiteID)
		if err != nil {
			return err
		}
		d.SiteName = s.Name
	}
	if d.Services, err = u.inv.ListServices(ctx, inventory.ServiceFilter{HostID: h.ID}); err != nil {
		return err
	}
	if d.Changes, err = u.recentChanges(ctx, h); err != nil {
		return err
	}
	d.Live = u.hostLive(h, c)
	d.Charts = u.charts(ctx, h, c, r.URL.Query().Get("range"))
	u.render(w, r, http.StatusOK, "host", d)
	return nil
}

func (u *UI) hostLive(h inventory.Host, c inventory.Client) hostLive {
	hh := u.healthOf(c.Slug, h.Name)
	return hostLive{HostID: h.ID, Status: h.Status, Health: hh, State: hh.State(),
		URL: "/hosts/" + url.PathEscape(h.ID) + "/_health", Refresh: refreshSeconds(u.interval)}
}

func (u *UI) hostAndClient(r *http.Request) (inventory.Host, inventory.Client, error) {
	h, err := u.inv.GetHost(r.Context(), r.PathValue("id"))
	if err != nil {
		return h, inventory.Client{}, err
	}
	c, err := u.inv.GetClient(r.Context(), h.ClientID)
	return h, c, err
}

func (u *UI) hostHealthLive(w http.ResponseWriter, r *http.Request) error {
	h, c, err := u.hostAndClient(r)
	if err != nil {
		return err
	}
	u.renderFragment(w, "host", "host-health", u.hostLive(h, c))
	return nil
}

func (u *UI) hostChartsLive(w http.ResponseWriter, r *http.Request) error {
	h, c, err := u.hostAndClient(r)
	if err != nil {
		return err
	}
	u.renderFragment(w, "host", "host-charts", u.charts(r.Context(), h, c, r.URL.Query().Get("range")))
	return nil
}

// hostApprove makes a pending host active, so that the hub starts scraping it.
func (u *UI) hostApprove(w http.ResponseWriter, r *http.Request) error {
	h, err := u.inv.GetHost(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if h.Status != inventory.StatusPending {
		setFlash(w, r, fmt.Sprintf("%s is %s, not awaiting approval.", h.Name, h.Status))
		redirect(w, r, hostURL(h.ID))
		return nil
	}
	h.Status = inventory.StatusActive
	if _, err := u.inv.UpdateHost(r.Context(), h); err != nil {
		return err
	}
	u.hostsChanged()
	u.logger.Info("host approved", "host", h.Name, "host_id", h.ID, "by", userName(r))
	msg := h.Name + " approved."
	if h.AgentURL != "" {
		msg += " The hub starts scraping it within a few seconds."
	} else {
		msg += " It has no agent URL, so it is not scraped yet."
	}
	setFlash(w, r, msg)
	redirect(w, r, hostURL(h.ID))
	return nil
}

func hostURL(id string) string   { return "/hosts/" + url.PathEscape(id) }
func clientURL(id string) string { return "/clients/" + url.PathEscape(id) }
