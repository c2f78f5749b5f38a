package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/inventory"
)

// contractRow is a contract as lists show it, with the billing comparison an MSP checks every
// month: nodes under contract against hosts actually monitored (active).
type contractRow struct {
	Contract   inventory.Contract
	ClientName string
	Active     int // the client's active hosts
	Services   string
	Rate       string
	State      string // current, ended, future
	Over       bool   // more hosts monitored than contracted
}

func newContractRow(k inventory.Contract, c inventory.Client, active int) contractRow {
	l := make([]string, len(k.Services))
	for i, s := range k.Services {
		l[i] = string(s)
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	state := "current"
	switch {
	case k.StartDate.After(today):
		state = "future"
	case !k.EndDate.IsZero() && k.EndDate.Before(today):
		state = "ended"
	}
	return contractRow{Contract: k, ClientName: c.Name, Active: active, Services: strings.Join(l, ", "),
		Rate: money(k.RateMinor, k.Currency), State: state, Over: state == "current" && active > k.NodesContracted}
}

type contractsData struct {
	base
	Rows    []contractRow
	Client  string
	Clients []option
}

func (u *UI) contractList(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	clientID := r.URL.Query().Get("client")
	clients, err := u.inv.ListClients(ctx, inventory.ClientFilter{})
	if err != nil {
		return err
	}
	contracts, err := u.inv.ListContracts(ctx, inventory.ContractFilter{ClientID: clientID})
	if err != nil {
		return err
	}
	active, err := u.inv.HostCountsByClient(ctx, inventory.StatusActive)
	if err != nil {
		return err
	}
	byID := map[string]inventory.Client{}
	d := contractsData{base: u.base(r, "Contracts", "contracts"), Client: clientID, Clients: []option{{Value: "", Label: "All clients"}}}
	for _, c := range clients {
		byID[c.ID] = c
		d.Clients = append(d.Clients, option{Value: c.ID, Label: c.Name})
	}
	for _, k := range contracts {
		d.Rows = append(d.Rows, newContractRow(k, byID[k.ClientID], active[k.ClientID]))
	}
	u.render(w, r, http.StatusOK, "contracts", d)
	return nil
}

var contractFields = []string{"client_id", "name", "services", "nodes_contracted", "rate", "currency", "start_date", "end_date", "notes"}

func contractForm(k inventory.Contract) *form {
	f := newForm(contractFields...)
	f.set("client_id", k.ClientID)
	f.set("name", k.Name)
	f.set("nodes_contracted", strconv.Itoa(k.NodesContracted))
	for _, s := range k.Services {
		f.values.Add("services", string(s))
	}
	f.set("rate", formatAmount(k.RateMinor, minorDigits(k.Currency)))
	f.set("currency", k.Currency)
	if !k.StartDate.IsZero() {
		f.set("start_date", k.StartDate.Format(time.DateOnly))
	}
	if !k.EndDate.IsZero() {
		f.set("end_date", k.EndDate.Format(time.DateOnly))
	}
	f.set("notes", k.Notes)
	return f
}

// contract reads the form into a contract. Fields that cannot even be parsed (a number that is
// not one) get their errors here; the contract's own validation adds the rest, so the user sees
// every problem at once.
func (f *form) contract() inventory.Contract {
	k := inventory.Contract{
		ClientID:        f.Get("client_id"),
		Name:            f.Get("name"),
		NodesContracted: f.parseInt("nodes_contracted", 0),
		Currency:        strings.ToUpper(strings.TrimSpace(f.Get("currency"))),
		StartDate:       f.parseDate("start_date"),
		EndDate:         f.parseDate("end_date"),
		Notes:           f.Get("notes"),
	}
	for _, s := range f.values["services"] {
		k.Services = append(k.Services, inventory.Offering(s))
	}
	rate, err := parseAmount(f.Get("rate"), minorDigits(k.Currency))
	if err != nil {
		f.add("rate", err.Error())
	}
	k.RateMinor = rate
	return k
}

// contractRename files the inventory's field names under the form's.
var contractRename = map[string]string{"rate_minor": "rate"}

func offeringOptions() []option {
	out := make([]option, len(inventory.Offerings))
	for i, o := range inventory.Offerings {
		out[i] = option{Value: string(o), Label: string(o)}
	}
	return out
}

func (u *UI) contractFormData(r *http.Request, k *inventory.Contract, f *form) (formData, error) {
	d := formData{Form: f, Offerings: offeringOptions(), Cancel: "/contracts"}
	clients, err := u.inv.ListClients(r.Context(), inventory.ClientFilter{})
	if err != nil {
		return d, err
	}
	if k == nil {
		d.base = u.base(r, "New contract", "contracts")
		d.Heading, d.Action, d.Submit = "New contract", "/contracts/new", "Create contract"
		d.Clients = []option{{Value: "", Label: "Choose a client"}}
		for _, c := range clients {
			d.Clients = append(d.Clients, option{Value: c.ID, Label: c.Name})
			if c.ID == f.Get("client_id") {
				d.Cancel = clientURL(c.ID)
			}
		}
		return d, nil
	}
	d.base = u.base(r, "Edit "+k.Name, "contracts")
	d.Heading, d.Action, d.Submit, d.Editing = "Edit contract "+k.Name, "/contracts/"+url.PathEscape(k.ID)+"/edit", "Save changes", true
	for _, c := range clients {
		if c.ID == k.ClientID {
			d.Context = "Client " + c.Name
			d.Cancel = clientURL(c.ID)
		}
	}
	return d, nil
}

func (u *UI) contractNew(w http.ResponseWriter, r *http.Request) error {
	f := newForm(contractFields...)
	f.set("client_id", r.URL.Query().Get("client"))
	f.set("currency", "INR")
	f.set("start_date", time.Now().Format(time.DateOnly))
	f.values.Add("services", string(inventory.Offerings[0]))
	d, err := u.contractFormData(r, nil, f)
	if err != nil {
		return err
	}
	u.renderForm(w, r, "contract-form", d)
	return nil
}

func (u *UI) contractCreate(w http.ResponseWriter, r *http.Request) error {
	f := newForm(contractFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	k := f.contract()
	var err error
	if f.Invalid() {
		f.addMissingErrors(k.Validate(), contractRename)
	} else {
		k, err = u.inv.CreateContract(r.Context(), k)
		if fe := inventory.FieldErrors(err); fe != nil {
			f.addFieldErrors(fe, contractRename)
			err = nil
		}
	}
	if err != nil {
		return err
	}
	if f.Invalid() {
		d, err := u.contractFormData(r, nil, f)
		if err != nil {
			return err
		}
		u.renderForm(w, r, "contract-form", d)
		return nil
	}
	setFlash(w, r, "Contract "+k.Name+" created.")
	redirect(w, r, clientURL(k.ClientID))
	return nil
}

func (u *UI) contractEdit(w http.ResponseWriter, r *http.Request) error {
	k, err := u.inv.GetContract(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	d, err := u.contractFormData(r, &k, contractForm(k))
	if err != nil {
		return err
	}
	u.renderForm(w, r, "contract-form", d)
	return nil
}

func (u *UI) contractUpdate(w http.ResponseWriter, r *http.Request) error {
	cur, err := u.inv.GetContract(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	f := newForm(contractFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	f.set("client_id", cur.ClientID) // a contract never moves to another client
	k := f.contract()
	k.ID = cur.ID
	if f.Invalid() {
		f.addMissingErrors(k.Validate(), contractRename)
	} else {
		k, err = u.inv.UpdateContract(r.Context(), k)
		if fe := inventory.FieldErrors(err); fe != nil {
			f.addFieldErrors(fe, contractRename)
		} else if err != nil {
			return err
		}
	}
	if f.Invalid() {
		d, err := u.contractFormData(r, &cur, f)
		if err != nil {
			return err
		}
		u.renderForm(w, r, "contract-form", d)
		return nil
	}
	setFlash(w, r, "Contract "+k.Name+" saved.")
	redirect(w, r, clientURL(k.ClientID))
	return nil
}

func (u *UI) contractDeleteConfirm(w http.ResponseWriter, r *http.Request) error {
	k, err := u.inv.GetContract(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	c, err := u.inv.GetClient(r.Context(), k.ClientID)
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "delete", deleteData{base: u.base(r, "Delete "+k.Name, "contracts"), What: "contract",
		Name: k.Name + " (" + c.Name + ")", Consequence: "Reports stop counting it for billing.",
		Action: "/contracts/" + url.PathEscape(k.ID) + "/delete", Cancel: clientURL(c.ID)})
	return nil
}

func (u *UI) contractDelete(w http.ResponseWriter, r *http.Request) error {
	k, err := u.inv.GetContract(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := u.inv.DeleteContract(r.Context(), k.ID); err != nil {
		return err
	}
	setFlash(w, r, "Contract "+k.Name+" deleted.")
	redirect(w, r, clientURL(k.ClientID))
	return nil
}
