package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/inventory"
)

// formData is what every create and edit page shows: the form, where it goes, and the choices
// of its selects.
type formData struct {
	base
	Form      *form
	Heading   string
	Context   string // what the record belongs to, e.g. the client of a site
	Action    string
	Submit    string
	Cancel    string
	Editing   bool
	Clients   []option
	Sites     []option
	Statuses  []option
	Types     []option
	Offerings []option
}

// deleteData is the confirmation step of a delete.
type deleteData struct {
	base
	What        string // "client"
	Name        string
	Consequence string // what goes with it
	Blocked     string // why it cannot be deleted now; no button then
	Error       string
	Action      string
	Cancel      string
}

// renderForm shows a form: 200 when first shown, 400 when it came back with errors.
func (u *UI) renderForm(w http.ResponseWriter, r *http.Request, page string, d formData) {
	code := http.StatusOK
	if d.Form.Invalid() {
		code = http.StatusBadRequest
	}
	u.render(w, r, code, page, d)
}

func userName(r *http.Request) string {
	if u, ok := auth.UserFrom(r.Context()); ok {
		return u.Username
	}
	return ""
}

// --- clients ---------------------------------------------------------------------------------

type clientRow struct {
	Client        inventory.Client
	Hosts, Active int
	Up, Down      int
	Contracts     int
}

type clientsData struct {
	base
	Rows []clientRow
	Q    string
}

func (u *UI) clientList(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q := r.URL.Query().Get("q")
	clients, err := u.inv.ListClients(ctx, inventory.ClientFilter{NameContains: q})
	if err != nil {
		return err
	}
	all, err := u.inv.HostCountsByClient(ctx, "")
	if err != nil {
		return err
	}
	refs, err := u.inv.ListHostRefs(ctx, inventory.HostFilter{Status: inventory.StatusActive})
	if err != nil {
		return err
	}
	contracts, err := u.inv.ListContracts(ctx, inventory.ContractFilter{ActiveOn: time.Now()})
	if err != nil {
		return err
	}
	type counts struct{ active, up, down, contracts int }
	per := map[string]*counts{}
	get := func(id string) *counts {
		if per[id] == nil {
			per[id] = &counts{}
		}
		return per[id]
	}
	healthOf := u.healthLookup()
	for _, h := range refs {
		c := get(h.ClientID)
		c.active++
		switch healthOf(h.ClientSlug, h.Name).State() {
		case "up":
			c.up++
		case "down":
			c.down++
		}
	}
	for _, k := range contracts {
		get(k.ClientID).contracts++
	}
	d := clientsData{base: u.base(r, "Clients", "clients"), Q: q}
	for _, c := range clients {
		n := get(c.ID)
		d.Rows = append(d.Rows, clientRow{Client: c, Hosts: all[c.ID], Active: n.active, Up: n.up, Down: n.down, Contracts: n.contracts})
	}
	u.render(w, r, http.StatusOK, "clients", d)
	return nil
}

type clientData struct {
	base
	Client    inventory.Client
	Sites     []siteRow
	Hosts     []hostRow
	HostTotal int
	HostsURL  string
	Contracts []contractRow
	Services  []serviceRow
	Changes   bool // the hub keeps change events: link the client's timeline
}

type siteRow struct {
	Site  inventory.Site
	Hosts int
}

type serviceRow struct {
	Service  inventory.Service
	HostName string
}

// clientHostsShown bounds the hosts listed on a client's page; the hosts page has them all.
const clientHostsShown = 50

func (u *UI) clientPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c, err := u.inv.GetClient(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	d := clientData{base: u.base(r, c.Name, "clients"), Client: c, Changes: u.changes != nil,
		HostsURL: withQuery("/hosts", url.Values{"client": {c.ID}})}
	sites, err := u.inv.ListSites(ctx, inventory.SiteFilter{ClientID: c.ID})
	if err != nil {
		return err
	}
	for _, s := range sites {
		n, err := u.inv.CountHosts(ctx, inventory.HostFilter{SiteID: s.ID})
		if err != nil {
			return err
		}
		d.Sites = append(d.Sites, siteRow{Site: s, Hosts: n})
	}
	if d.HostTotal, err = u.inv.CountHosts(ctx, inventory.HostFilter{ClientID: c.ID}); err != nil {
		return err
	}
	hosts, err := u.inv.ListHostSummaries(ctx, inventory.HostFilter{ClientID: c.ID, Page: inventory.Page{Limit: clientHostsShown}}, nil)
	if err != nil {
		return err
	}
	d.Hosts = u.hostRows(hosts)
	contracts, err := u.inv.ListContracts(ctx, inventory.ContractFilter{ClientID: c.ID})
	if err != nil {
		return err
	}
	active, err := u.inv.CountHosts(ctx, inventory.HostFilter{ClientID: c.ID, Status: inventory.StatusActive})
	if err != nil {
		return err
	}
	for _, k := range contracts {
		d.Contracts = append(d.Contracts, newContractRow(k, c, active))
	}
	services, err := u.inv.ListServices(ctx, inventory.ServiceFilter{ClientID: c.ID, Page: inventory.Page{Limit: 200}})
	if err != nil {
		return err
	}
	if len(services) > 0 {
		names := map[string]string{}
		refs, err := u.inv.ListHostRefs(ctx, inventory.HostFilter{ClientID: c.ID})
		if err != nil {
			return err
		}
		for _, h := range refs {
			names[h.ID] = h.Name
		}
		for _, s := range services {
			d.Services = append(d.Services, serviceRow{Service: s, HostName: names[s.HostID]})
		}
	}
	u.render(w, r, http.StatusOK, "client", d)
	return nil
}

var clientFields = []string{"name", "slug", "notes"}

func clientForm(c inventory.Client) *form {
	f := newForm(clientFields...)
	f.set("name", c.Name)
	f.set("slug", c.Slug)
	f.set("notes", c.Notes)
	return f
}

func (f *form) client() inventory.Client {
	return inventory.Client{Name: f.Get("name"), Slug: f.Get("slug"), Notes: f.Get("notes")}
}

func (u *UI) clientNew(w http.ResponseWriter, r *http.Request) error {
	u.renderForm(w, r, "client-form", formData{base: u.base(r, "New client", "clients"), Form: newForm(clientFields...),
		Heading: "New client", Action: "/clients/new", Submit: "Create client", Cancel: "/clients"})
	return nil
}

func (u *UI) clientCreate(w http.ResponseWriter, r *http.Request) error {
	f := newForm(clientFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	c, err := u.inv.CreateClient(r.Context(), f.client())
	if fe := inventory.FieldErrors(err); fe != nil {
		f.addFieldErrors(fe, nil)
		u.renderForm(w, r, "client-form", formData{base: u.base(r, "New client", "clients"), Form: f,
			Heading: "New client", Action: "/clients/new", Submit: "Create client", Cancel: "/clients"})
		return nil
	}
	if err != nil {
		return err
	}
	u.logger.Info("client created", "client", c.Slug, "by", userName(r))
	setFlash(w, r, "Client "+c.Name+" created.")
	redirect(w, r, clientURL(c.ID))
	return nil
}

func (u *UI) clientEdit(w http.ResponseWriter, r *http.Request) error {
	c, err := u.inv.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	u.renderForm(w, r, "client-form", u.clientEditData(r, c, clientForm(c)))
	return nil
}

func (u *UI) clientEditData(r *http.Request, c inventory.Client, f *form) formData {
	return formData{base: u.base(r, "Edit "+c.Name, "clients"), Form: f, Editing: true,
		Heading: "Edit client " + c.Name, Action: clientURL(c.ID) + "/edit", Submit: "Save changes", Cancel: clientURL(c.ID)}
}

func (u *UI) clientUpdate(w http.ResponseWriter, r *http.Request) error {
	cur, err := u.inv.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	f := newForm(clientFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	c := f.client()
	c.ID = cur.ID
	c, err = u.inv.UpdateClient(r.Context(), c)
	if fe := inventory.FieldErrors(err); fe != nil {
		f.addFieldErrors(fe, nil)
		u.renderForm(w, r, "client-form", u.clientEditData(r, cur, f))
		return nil
	}
	if err != nil {
		return err
	}
	if c.Slug != cur.Slug {
		u.hostsChanged() // the client label of its hosts' series changes
	}
	setFlash(w, r, "Client "+c.Name+" saved.")
	redirect(w, r, clientURL(c.ID))
	return nil
}

// clientDependents says what keeps a client from being deleted ("2 hosts and 1 site"), or "".
func (u *UI) clientDependents(ctx context.Context, id string) (string, error) {
	hosts, err := u.inv.CountHosts(ctx, inventory.HostFilter{ClientID: id})
	if err != nil {
		return "", err
	}
	sites, err := u.inv.ListSites(ctx, inventory.SiteFilter{ClientID: id})
	if err != nil {
		return "", err
	}
	contracts, err := u.inv.ListContracts(ctx, inventory.ContractFilter{ClientID: id})
	if err != nil {
		return "", err
	}
	var l []string
	if hosts > 0 {
		l = append(l, plural(hosts, "host", "hosts"))
	}
	if len(sites) > 0 {
		l = append(l, plural(len(sites), "site", "sites"))
	}
	if len(contracts) > 0 {
		l = append(l, plural(len(contracts), "contract", "contracts"))
	}
	return joinAnd(l), nil
}

func joinAnd(l []string) string {
	switch len(l) {
	case 0:
		return ""
	case 1:
		return l[0]
	}
	s := l[0]
	for _, x := range l[1 : len(l)-1] {
		s += ", " + x
	}
	return s + " and " + l[len(l)-1]
}

func (u *UI) clientDeleteData(r *http.Request, c inventory.Client) deleteData {
	return deleteData{base: u.base(r, "Delete "+c.Name, "clients"), What: "client", Name: c.Name,
		Action: clientURL(c.ID) + "/delete", Cancel: clientURL(c.ID)}
}

func (u *UI) clientDeleteConfirm(w http.ResponseWriter, r *http.Request) error {
	c, err := u.inv.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	d := u.clientDeleteData(r, c)
	deps, err := u.clientDependents(r.Context(), c.ID)
	if err != nil {
		return err
	}
	if deps != "" {
		d.Blocked = fmt.Sprintf("%s still has %s. Delete or move them first; a client's records are never deleted with it.", c.Name, deps)
	}
	u.render(w, r, http.StatusOK, "delete", d)
	return nil
}

func (u *UI) clientDelete(w http.ResponseWriter, r *http.Request) error {
	c, err := u.inv.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	err = u.inv.DeleteClient(r.Context(), c.ID)
	if errors.Is(err, inventory.ErrInUse) {
		d := u.clientDeleteData(r, c)
		d.Blocked = err.Error()
		if deps, derr := u.clientDependents(r.Context(), c.ID); derr == nil && deps != "" {
			d.Blocked = fmt.Sprintf("%s still has %s. Delete or move them first; a client's records are never deleted with it.", c.Name, deps)
		}
		u.render(w, r, http.StatusConflict, "delete", d)
		return nil
	}
	if err != nil {
		return err
	}
	u.logger.Info("client deleted", "client", c.Slug, "by", userName(r))
	setFlash(w, r, "Client "+c.Name+" deleted.")
	redirect(w, r, "/clients")
	return nil
}
