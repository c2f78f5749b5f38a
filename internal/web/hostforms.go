package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/serversage/sage/internal/inventory"
)

// hostFields are in the order the form shows them, so that the first one with an error gets the
// cursor.
var hostFields = []string{"client_id", "name", "site_id", "status", "agent_url", "addresses", "os", "role", "tags"}

func hostForm(h inventory.Host) *form {
	f := newForm(hostFields...)
	f.set("client_id", h.ClientID)
	f.set("site_id", h.SiteID)
	f.set("name", h.Name)
	f.set("addresses", strings.Join(h.Addresses, "\n"))
	f.set("os", h.OS)
	f.set("role", h.Role)
	f.set("tags", strings.Join(h.Tags, " "))
	f.set("agent_url", h.AgentURL)
	f.set("status", string(h.Status))
	return f
}

// applyHost puts the form's fields into h, leaving what the form does not show (facts, machine
// id, enrolment) as it was.
func (f *form) applyHost(h *inventory.Host) {
	h.SiteID = f.Get("site_id")
	h.Name = f.Get("name")
	h.Addresses = parseList(f.Get("addresses"), true)
	h.OS = f.Get("os")
	h.Role = f.Get("role")
	h.Tags = parseList(f.Get("tags"), true)
	h.AgentURL = f.Get("agent_url")
	h.Status = inventory.Status(f.Get("status"))
}

var statusOptions = []option{
	{Value: "active", Label: "Active: monitored"},
	{Value: "pending", Label: "Pending: awaiting approval"},
	{Value: "retired", Label: "Retired: kept for the record, not monitored"},
}

// hostFormData fills the selects: every client when creating; the sites of the chosen client,
// or of every client grouped by client when none is chosen yet.
func (u *UI) hostFormData(ctx context.Context, r *http.Request, h *inventory.Host, f *form) (formData, error) {
	d := formData{Form: f, Statuses: statusOptions}
	clients, err := u.inv.ListClients(ctx, inventory.ClientFilter{})
	if err != nil {
		return d, err
	}
	names := map[string]string{}
	for _, c := range clients {
		names[c.ID] = c.Name
	}
	clientID := f.Get("client_id")
	if h != nil {
		clientID = h.ClientID
	}
	sf := inventory.SiteFilter{ClientID: clientID}
	if names[clientID] == "" {
		sf.ClientID = ""
	}
	sites, err := u.inv.ListSites(ctx, sf)
	if err != nil {
		return d, err
	}
	d.Sites = []option{{Value: "", Label: "No particular site"}}
	for _, s := range sites {
		o := option{Value: s.ID, Label: s.Name}
		if sf.ClientID == "" {
			o.Group = names[s.ClientID]
		}
		d.Sites = append(d.Sites, o)
	}
	if h == nil {
		d.base = u.base(r, "New host", "hosts")
		d.Heading, d.Action, d.Submit, d.Cancel = "New host", "/hosts/new", "Create host", "/hosts"
		d.Clients = []option{{Value: "", Label: "Choose a client"}}
		for _, c := range clients {
			d.Clients = append(d.Clients, option{Value: c.ID, Label: c.Name})
		}
		if names[clientID] != "" {
			d.Cancel = clientURL(clientID)
		}
		return d, nil
	}
	d.base = u.base(r, "Edit "+h.Name, "hosts")
	d.Heading, d.Action, d.Submit, d.Cancel, d.Editing = "Edit host "+h.Name, hostURL(h.ID)+"/edit", "Save changes", hostURL(h.ID), true
	d.Context = "Client " + names[h.ClientID]
	return d, nil
}

func (u *UI) hostNew(w http.ResponseWriter, r *http.Request) error {
	f := newForm(hostFields...)
	f.set("client_id", r.URL.Query().Get("client"))
	f.set("status", string(inventory.StatusActive))
	d, err := u.hostFormData(r.Context(), r, nil, f)
	if err != nil {
		return err
	}
	u.renderForm(w, r, "host-form", d)
	return nil
}

func (u *UI) hostCreate(w http.ResponseWriter, r *http.Request) error {
	f := newForm(hostFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	h := inventory.Host{ClientID: f.Get("client_id")}
	f.applyHost(&h)
	h, err := u.inv.CreateHost(r.Context(), h)
	if fe := inventory.FieldErrors(err); fe != nil {
		f.addFieldErrors(fe, nil)
		d, err := u.hostFormData(r.Context(), r, nil, f)
		if err != nil {
			return err
		}
		u.renderForm(w, r, "host-form", d)
		return nil
	}
	if err != nil {
		return err
	}
	u.hostsChanged()
	u.logger.Info("host created", "host", h.Name, "host_id", h.ID, "by", userName(r))
	setFlash(w, r, "Host "+h.Name+" created.")
	redirect(w, r, hostURL(h.ID))
	return nil
}

func (u *UI) hostEdit(w http.ResponseWriter, r *http.Request) error {
	h, err := u.inv.GetHost(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	d, err := u.hostFormData(r.Context(), r, &h, hostForm(h))
	if err != nil {
		return err
	}
	u.renderForm(w, r, "host-form", d)
	return nil
}

func (u *UI) hostUpdate(w http.ResponseWriter, r *http.Request) error {
	cur, err := u.inv.GetHost(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	f := newForm(hostFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	h := cur
	f.applyHost(&h)
	h, err = u.inv.UpdateHost(r.Context(), h)
	if fe := inventory.FieldErrors(err); fe != nil {
		f.addFieldErrors(fe, nil)
		d, err := u.hostFormData(r.Context(), r, &cur, f)
		if err != nil {
			return err
		}
		u.renderForm(w, r, "host-form", d)
		return nil
	}
	if err != nil {
		return err
	}
	u.hostsChanged()
	setFlash(w, r, "Host "+h.Name+" saved.")
	redirect(w, r, hostURL(h.ID))
	return nil
}

func (u *UI) hostDeleteData(r *http.Request, h inventory.Host) deleteData {
	return deleteData{base: u.base(r, "Delete "+h.Name, "hosts"), What: "host", Name: h.Name,
		Action: hostURL(h.ID) + "/delete", Cancel: hostURL(h.ID)}
}

func (u *UI) hostDeleteConfirm(w http.ResponseWriter, r *http.Request) error {
	h, err := u.inv.GetHost(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	d := u.hostDeleteData(r, h)
	services, err := u.inv.ListServices(r.Context(), inventory.ServiceFilter{HostID: h.ID})
	if err != nil {
		return err
	}
	d.Consequence = "It stops being scraped. Its metrics stay until the retention removes them."
	if len(services) > 0 {
		d.Consequence = "Its " + plural(len(services), "service is", "services are") + " deleted with it. " + d.Consequence
	}
	if h.Status != inventory.StatusRetired {
		d.Consequence += " To keep its record instead, edit it and set it to retired."
	}
	u.render(w, r, http.StatusOK, "delete", d)
	return nil
}

func (u *UI) hostDelete(w http.ResponseWriter, r *http.Request) error {
	h, err := u.inv.GetHost(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := u.inv.DeleteHost(r.Context(), h.ID); err != nil {
		return err
	}
	u.hostsChanged()
	u.logger.Info("host deleted", "host", h.Name, "host_id", h.ID, "by", userName(r))
	setFlash(w, r, "Host "+h.Name+" deleted.")
	redirect(w, r, clientURL(h.ClientID))
	return nil
}

// --- services ----------------------------------------------------------------------------------

var serviceFields = []string{"type", "name", "target", "credentials_ref", "notes"}

func (f *form) service() inventory.Service {
	return inventory.Service{Type: inventory.ServiceType(f.Get("type")), Name: f.Get("name"), Target: f.Get("target"),
		CredentialsRef: f.Get("credentials_ref"), Notes: f.Get("notes")}
}

func serviceTypeOptions() []option {
	out := []option{{Value: "", Label: "Choose a type"}}
	for _, t := range inventory.ServiceTypes {
		out = append(out, option{Value: string(t), Label: string(t)})
	}
	return out
}

func (u *UI) serviceFormData(r *http.Request, h inventory.Host, s *inventory.Service, f *form) formData {
	d := formData{Form: f, Context: "Host " + h.Name, Cancel: hostURL(h.ID), Types: serviceTypeOptions()}
	if s == nil {
		d.base = u.base(r, "New service", "hosts")
		d.Heading, d.Action, d.Submit = "New service", hostURL(h.ID)+"/services/new", "Add service"
	} else {
		d.base = u.base(r, "Edit "+s.Name, "hosts")
		d.Heading, d.Action, d.Submit, d.Editing = "Edit service "+s.Name, "/services/"+url.PathEscape(s.ID)+"/edit", "Save changes", true
	}
	return d
}

func (u *UI) serviceNew(w http.ResponseWriter, r *http.Request) error {
	h, err := u.inv.GetHost(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	u.renderForm(w, r, "service-form", u.serviceFormData(r, h, nil, newForm(serviceFields...)))
	return nil
}

func (u *UI) serviceCreate(w http.ResponseWriter, r *http.Request) error {
	h, err := u.inv.GetHost(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	f := newForm(serviceFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	s := f.service()
	s.HostID = h.ID
	s, err = u.inv.CreateService(r.Context(), s)
	if fe := inventory.FieldErrors(err); fe != nil {
		f.addFieldErrors(fe, nil)
		u.renderForm(w, r, "service-form", u.serviceFormData(r, h, nil, f))
		return nil
	}
	if err != nil {
		return err
	}
	setFlash(w, r, "Service "+s.Name+" added to "+h.Name+".")
	redirect(w, r, hostURL(h.ID))
	return nil
}

func (u *UI) serviceAndHost(r *http.Request) (inventory.Service, inventory.Host, error) {
	s, err := u.inv.GetService(r.Context(), r.PathValue("id"))
	if err != nil {
		return s, inventory.Host{}, err
	}
	h, err := u.inv.GetHost(r.Context(), s.HostID)
	return s, h, err
}

func (u *UI) serviceEdit(w http.ResponseWriter, r *http.Request) error {
	s, h, err := u.serviceAndHost(r)
	if err != nil {
		return err
	}
	f := newForm(serviceFields...)
	f.set("type", string(s.Type))
	f.set("name", s.Name)
	f.set("target", s.Target)
	f.set("credentials_ref", s.CredentialsRef)
	f.set("notes", s.Notes)
	u.renderForm(w, r, "service-form", u.serviceFormData(r, h, &s, f))
	return nil
}

func (u *UI) serviceUpdate(w http.ResponseWriter, r *http.Request) error {
	cur, h, err := u.serviceAndHost(r)
	if err != nil {
		return err
	}
	f := newForm(serviceFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	s := f.service()
	s.ID = cur.ID
	s, err = u.inv.UpdateService(r.Context(), s)
	if fe := inventory.FieldErrors(err); fe != nil {
		f.addFieldErrors(fe, nil)
		u.renderForm(w, r, "service-form", u.serviceFormData(r, h, &cur, f))
		return nil
	}
	if err != nil {
		return err
	}
	setFlash(w, r, "Service "+s.Name+" saved.")
	redirect(w, r, hostURL(h.ID))
	return nil
}

func (u *UI) serviceDeleteConfirm(w http.ResponseWriter, r *http.Request) error {
	s, h, err := u.serviceAndHost(r)
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "delete", deleteData{base: u.base(r, "Delete "+s.Name, "hosts"), What: "service",
		Name: s.Name + " on " + h.Name, Action: "/services/" + url.PathEscape(s.ID) + "/delete", Cancel: hostURL(h.ID)})
	return nil
}

func (u *UI) serviceDelete(w http.ResponseWriter, r *http.Request) error {
	s, h, err := u.serviceAndHost(r)
	if err != nil {
		return err
	}
	if err := u.inv.DeleteService(r.Context(), s.ID); err != nil {
		return err
	}
	setFlash(w, r, "Service "+s.Name+" deleted.")
	redirect(w, r, hostURL(h.ID))
	return nil
}
