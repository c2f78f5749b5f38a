package web

import (
	"context"
	"fmt"
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
	if len(q.Q) > 200 {
		q.Q = strings.ToValidUTF8(q.Q[:200], "")
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
	Host       inventory.Host
	ClientName string
	SiteName   string
	Health     hosthealth.Health
	State      string
}

type hostsTable struct {
	Rows             []hostRow
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
	clients, err := u.inv.ListClients(r.Context(), inventory.ClientFilter{})
	if err != nil {
		return err
	}
	table, err := u.hostsTable(r.Context(), q, clients)
	if err != nil {
		return err
	}
	d := hostsData{base: u.base(r, "Hosts", "hosts"), Query: q, Table: table}
	d.Clients = append(d.Clients, option{Value: "", Label: "All clients"})
	for _, c := range clients {
		d.Clients = append(d.Clients, option{Value: c.ID, Label: c.Name})
	}
	d.Statuses = []option{{"", "Any lifecycle", ""}, {"pending", "Awaiting approval", ""}, {"active", "Active", ""}, {"retired", "Retired", ""}}
	d.Healths = []option{{"", "Any health", ""}}
	for _, s := range healthStates {
		d.Healths = append(d.Healths, option{Value: s, Label: stateLabel(s)})
	}
	u.render(w, r, http.StatusOK, "hosts", d)
	return nil
}

// hostTable is the hosts table alone, which the page polls to stay live.
func (u *UI) hostTable(w http.ResponseWriter, r *http.Request) error {
	q := parseHostsQuery(r.URL.Query())
	clients, err := u.inv.ListClients(r.Context(), inventory.ClientFilter{})
	if err != nil {
		return err
	}
	table, err := u.hostsTable(r.Context(), q, clients)
	if err != nil {
		return err
	}
	u.renderFragment(w, "hosts", "hosts-table", table)
	return nil
}

// hostsTable reads one page of hosts. Filtered by inventory fields only, that is one page query
// and one count; filtered by health, which only the tracker knows, it is one light query over
// the matching hosts (ListHostRefs), a map lookup per host, and one query for the page's hosts.
func (u *UI) hostsTable(ctx context.Context, q hostsQuery, clients []inventory.Client) (hostsTable, error) {
	t := hostsTable{Refresh: refreshSeconds(u.interval), Filtered: q.Filtered()}
	f := inventory.HostFilter{ClientID: q.Client, Status: inventory.Status(q.Status), NameContains: q.Q}
	page := q.Page
	var hosts []inventory.Host
	if q.Health == "" {
		n, err := u.inv.CountHosts(ctx, f)
		if err != nil {
			return t, err
		}
		t.Total = n
		page = clampPage(page, n)
		f.Page = inventory.Page{Limit: hostsPerPage, Offset: (page - 1) * hostsPerPage}
		if hosts, err = u.inv.ListHosts(ctx, f); err != nil {
			return t, err
		}
	} else {
		refs, err := u.inv.ListHostRefs(ctx, f)
		if err != nil {
			return t, err
		}
		var ids []string
		for _, h := range refs {
			if u.healthOf(h.ClientSlug, h.Name).State() == q.Health {
				ids = append(ids, h.ID)
			}
		}
		t.Total = len(ids)
		page = clampPage(page, len(ids))
		lo := min((page-1)*hostsPerPage, len(ids))
		hi := min(lo+hostsPerPage, len(ids))
		if hosts, err = u.inv.ListHostsByID(ctx, ids[lo:hi]); err != nil {
			return t, err
		}
	}
	rows, err := u.hostRows(ctx, hosts, clients)
	if err != nil {
		return t, err
	}
	t.Rows = rows
	t.Page = page
	t.Pages = max((t.Total+hostsPerPage-1)/hostsPerPage, 1)
	if t.Total > 0 {
		t.From = (page-1)*hostsPerPage + 1
		t.To = t.From + len(rows) - 1
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

func clampPage(page, total int) int {
	last := max((total+hostsPerPage-1)/hostsPerPage, 1)
	return min(max(page, 1), last)
}

// hostRows adds to each host its client's and site's names and its health.
func (u *UI) hostRows(ctx context.Context, hosts []inventory.Host, clients []inventory.Client) ([]hostRow, error) {
	byID := make(map[string]inventory.Client, len(clients))
	for _, c := range clients {
		byID[c.ID] = c
	}
	sites := map[string]string{}
	if slices.ContainsFunc(hosts, func(h inventory.Host) bool { return h.SiteID != "" }) {
		l, err := u.inv.ListSites(ctx, inventory.SiteFilter{})
		if err != nil {
			return nil, err
		}
		for _, s := range l {
			sites[s.ID] = s.Name
		}
	}
	rows := make([]hostRow, len(hosts))
	for i, h := range hosts {
		c := byID[h.ClientID]
		hh := u.healthOf(c.Slug, h.Name)
		rows[i] = hostRow{Host: h, ClientName: c.Name, SiteName: sites[h.SiteID], Health: hh, State: hh.State()}
	}
	return rows, nil
}

type hostData struct {
	base
	Host     inventory.Host
	Client   inventory.Client
	SiteName string
	Services []inventory.Service
	Live     hostLive
	Charts   chartsView
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
