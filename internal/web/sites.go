package web

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/serversage/sage/internal/inventory"
)

var siteFields = []string{"name", "address", "notes"}

func (f *form) site() inventory.Site {
	return inventory.Site{Name: f.Get("name"), Address: f.Get("address"), Notes: f.Get("notes")}
}

func (u *UI) siteFormData(r *http.Request, c inventory.Client, s *inventory.Site, f *form) formData {
	d := formData{Form: f, Context: "Client " + c.Name, Cancel: clientURL(c.ID)}
	if s == nil {
		d.base = u.base(r, "New site", "clients")
		d.Heading, d.Action, d.Submit = "New site", clientURL(c.ID)+"/sites/new", "Create site"
	} else {
		d.base = u.base(r, "Edit "+s.Name, "clients")
		d.Heading, d.Action, d.Submit, d.Editing = "Edit site "+s.Name, "/sites/"+url.PathEscape(s.ID)+"/edit", "Save changes", true
	}
	return d
}

func (u *UI) siteNew(w http.ResponseWriter, r *http.Request) error {
	c, err := u.inv.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	u.renderForm(w, r, "site-form", u.siteFormData(r, c, nil, newForm(siteFields...)))
	return nil
}

func (u *UI) siteCreate(w http.ResponseWriter, r *http.Request) error {
	c, err := u.inv.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	f := newForm(siteFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	s := f.site()
	s.ClientID = c.ID
	s, err = u.inv.CreateSite(r.Context(), s)
	if fe := inventory.FieldErrors(err); fe != nil {
		f.addFieldErrors(fe, nil)
		u.renderForm(w, r, "site-form", u.siteFormData(r, c, nil, f))
		return nil
	}
	if err != nil {
		return err
	}
	setFlash(w, r, "Site "+s.Name+" created.")
	redirect(w, r, clientURL(c.ID))
	return nil
}

func (u *UI) siteAndClient(r *http.Request) (inventory.Site, inventory.Client, error) {
	s, err := u.inv.GetSite(r.Context(), r.PathValue("id"))
	if err != nil {
		return s, inventory.Client{}, err
	}
	c, err := u.inv.GetClient(r.Context(), s.ClientID)
	return s, c, err
}

func (u *UI) siteEdit(w http.ResponseWriter, r *http.Request) error {
	s, c, err := u.siteAndClient(r)
	if err != nil {
		return err
	}
	f := newForm(siteFields...)
	f.set("name", s.Name)
	f.set("address", s.Address)
	f.set("notes", s.Notes)
	u.renderForm(w, r, "site-form", u.siteFormData(r, c, &s, f))
	return nil
}

func (u *UI) siteUpdate(w http.ResponseWriter, r *http.Request) error {
	cur, c, err := u.siteAndClient(r)
	if err != nil {
		return err
	}
	f := newForm(siteFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	s := f.site()
	s.ID = cur.ID
	s, err = u.inv.UpdateSite(r.Context(), s)
	if fe := inventory.FieldErrors(err); fe != nil {
		f.addFieldErrors(fe, nil)
		u.renderForm(w, r, "site-form", u.siteFormData(r, c, &cur, f))
		return nil
	}
	if err != nil {
		return err
	}
	if s.Name != cur.Name {
		u.hostsChanged() // the site label of its hosts' series changes
	}
	setFlash(w, r, "Site "+s.Name+" saved.")
	redirect(w, r, clientURL(c.ID))
	return nil
}

func (u *UI) siteDeleteData(r *http.Request, s inventory.Site, c inventory.Client) deleteData {
	return deleteData{base: u.base(r, "Delete "+s.Name, "clients"), What: "site", Name: s.Name + " (" + c.Name + ")",
		Action: "/sites/" + url.PathEscape(s.ID) + "/delete", Cancel: clientURL(c.ID)}
}

func (u *UI) siteDeleteConfirm(w http.ResponseWriter, r *http.Request) error {
	s, c, err := u.siteAndClient(r)
	if err != nil {
		return err
	}
	d := u.siteDeleteData(r, s, c)
	n, err := u.inv.CountHosts(r.Context(), inventory.HostFilter{SiteID: s.ID})
	if err != nil {
		return err
	}
	if n > 0 {
		d.Blocked = s.Name + " still has " + plural(n, "host", "hosts") + ". Move them to another site (or none) or delete them first."
	}
	u.render(w, r, http.StatusOK, "delete", d)
	return nil
}

func (u *UI) siteDelete(w http.ResponseWriter, r *http.Request) error {
	s, c, err := u.siteAndClient(r)
	if err != nil {
		return err
	}
	err = u.inv.DeleteSite(r.Context(), s.ID)
	if errors.Is(err, inventory.ErrInUse) {
		d := u.siteDeleteData(r, s, c)
		d.Blocked = err.Error()
		if n, cerr := u.inv.CountHosts(r.Context(), inventory.HostFilter{SiteID: s.ID}); cerr == nil && n > 0 {
			d.Blocked = s.Name + " still has " + plural(n, "host", "hosts") + ". Move them to another site (or none) or delete them first."
		}
		u.render(w, r, http.StatusConflict, "delete", d)
		return nil
	}
	if err != nil {
		return err
	}
	setFlash(w, r, "Site "+s.Name+" deleted.")
	redirect(w, r, clientURL(c.ID))
	return nil
}
