package api

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
)

// Query filters of each list, as documented in openapi.yaml.
var (
	clientFilters   = []string{"name_contains"}
	siteFilters     = []string{"client_id", "name_contains"}
	hostFilters     = []string{"client_id", "site_id", "status", "role", "tag", "name_contains", "machine_id"}
	serviceFilters  = []string{"host_id", "client_id", "type"}
	contractFilters = []string{"client_id", "service", "active_on"}
)

// query parses a list's query string, or answers 400 and returns false.
func query(w http.ResponseWriter, r *http.Request, filters []string) (listQuery, bool) {
	q, fe := parseListQuery(r.URL.RawQuery, filters)
	if len(fe) > 0 {
		writeError(w, http.StatusBadRequest, apiError{Error: "invalid query parameters", Fields: fe})
		return q, false
	}
	return q, true
}

// fetch is the page to ask the inventory for: one row more than the caller's, to learn whether
// there is a next page without counting.
func (q listQuery) fetch() inventory.Page {
	return inventory.Page{Limit: q.page.Limit + 1, Offset: q.page.Offset}
}

func writePage[T, V any](w http.ResponseWriter, q listQuery, items []T, view func(T) V) {
	p := page[V]{Limit: q.page.Limit, Offset: q.page.Offset}
	if len(items) > q.page.Limit {
		items = items[:q.page.Limit]
		next := q.page.Offset + q.page.Limit
		p.NextOffset = &next
	}
	p.Items = make([]V, len(items))
	for i, it := range items {
		p.Items[i] = view(it)
	}
	writeJSON(w, http.StatusOK, p)
}

func created(w http.ResponseWriter, kind, id string, v any) {
	w.Header().Set("Location", Prefix+kind+"/"+id)
	writeJSON(w, http.StatusCreated, v)
}

// idOr404 returns the path's id, or answers 404 for one no record can have.
func idOr404(w http.ResponseWriter, r *http.Request, what string) (string, bool) {
	id, ok := pathID(r)
	if !ok {
		writeError(w, http.StatusNotFound, apiError{Error: "no " + what + " has this id"})
	}
	return id, ok
}

// invalid answers 400 with ours and the record's own validation, for problems the handler finds
// before the inventory would (required-on-PUT fields, dates).
func invalid(w http.ResponseWriter, what string, ours []fieldError, theirs []config.FieldError) {
	writeError(w, http.StatusBadRequest, apiError{Error: "invalid " + what + "; nothing was saved", Fields: mergeFields(ours, theirs)})
}

func required(field string) fieldError {
	return fieldError{Field: field, Message: "is required when replacing the record (PUT)"}
}

func without(fe []config.FieldError, field string) []config.FieldError {
	return slices.DeleteFunc(fe, func(e config.FieldError) bool { return e.Field == field })
}

// Clients.

func (s *server) listClients(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, clientFilters)
	if !ok {
		return
	}
	items, err := s.inv.ListClients(r.Context(), inventory.ClientFilter{NameContains: q.filters["name_contains"], Page: q.fetch()})
	if err != nil {
		s.fail(w, r, "client", err)
		return
	}
	writePage(w, q, items, viewClient)
}

func (s *server) createClient(w http.ResponseWriter, r *http.Request) {
	var in clientInput
	if !decodeBody(w, r, &in, clientReadOnly) {
		return
	}
	c, err := s.inv.CreateClient(r.Context(), inventory.Client{Name: in.Name, Slug: in.Slug, Notes: in.Notes})
	if err != nil {
		s.fail(w, r, "client", err)
		return
	}
	created(w, "clients", c.ID, viewClient(c))
}

func (s *server) getClient(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "client")
	if !ok {
		return
	}
	c, err := s.inv.GetClient(r.Context(), id)
	if err != nil {
		s.fail(w, r, "client", err)
		return
	}
	writeJSON(w, http.StatusOK, viewClient(c))
}

func (s *server) updateClient(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "client")
	if !ok {
		return
	}
	var in clientInput
	if !decodeBody(w, r, &in, clientReadOnly) {
		return
	}
	c := inventory.Client{ID: id, Name: in.Name, Slug: in.Slug, Notes: in.Notes}
	if strings.TrimSpace(in.Slug) == "" {
		// Else the slug would be derived anew from the name, changing the client's label on
		// every series and the enrolment configuration's reference to it.
		invalid(w, "client", []fieldError{required("slug")}, c.Validate())
		return
	}
	c, err := s.inv.UpdateClient(r.Context(), c)
	if err != nil {
		s.fail(w, r, "client", err)
		return
	}
	s.slugs.invalidate()
	s.hostsChanged() // the slug is every host's client label
	writeJSON(w, http.StatusOK, viewClient(c))
}

func (s *server) deleteClient(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "client")
	if !ok {
		return
	}
	if err := s.inv.DeleteClient(r.Context(), id); err != nil {
		s.fail(w, r, "client", err)
		return
	}
	s.slugs.invalidate()
	w.WriteHeader(http.StatusNoContent)
}

// Sites.

func (s *server) listSites(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, siteFilters)
	if !ok {
		return
	}
	items, err := s.inv.ListSites(r.Context(), inventory.SiteFilter{
		ClientID: q.filters["client_id"], NameContains: q.filters["name_contains"], Page: q.fetch(),
	})
	if err != nil {
		s.fail(w, r, "site", err)
		return
	}
	writePage(w, q, items, viewSite)
}

func (in siteInput) site() inventory.Site {
	return inventory.Site{ClientID: in.ClientID, Name: in.Name, Address: in.Address, Notes: in.Notes}
}

func (s *server) createSite(w http.ResponseWriter, r *http.Request) {
	var in siteInput
	if !decodeBody(w, r, &in, siteReadOnly) {
		return
	}
	st, err := s.inv.CreateSite(r.Context(), in.site())
	if err != nil {
		s.fail(w, r, "site", err)
		return
	}
	created(w, "sites", st.ID, viewSite(st))
}

func (s *server) getSite(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "site")
	if !ok {
		return
	}
	st, err := s.inv.GetSite(r.Context(), id)
	if err != nil {
		s.fail(w, r, "site", err)
		return
	}
	writeJSON(w, http.StatusOK, viewSite(st))
}

func (s *server) updateSite(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "site")
	if !ok {
		return
	}
	var in siteInput
	if !decodeBody(w, r, &in, siteReadOnly) {
		return
	}
	st := in.site()
	st.ID = id
	st, err := s.inv.UpdateSite(r.Context(), st)
	if err != nil {
		s.fail(w, r, "site", err)
		return
	}
	s.hostsChanged() // the name is the site label of its hosts
	writeJSON(w, http.StatusOK, viewSite(st))
}

func (s *server) deleteSite(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "site")
	if !ok {
		return
	}
	if err := s.inv.DeleteSite(r.Context(), id); err != nil {
		s.fail(w, r, "site", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Hosts.

func (s *server) listHosts(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, hostFilters)
	if !ok {
		return
	}
	f := inventory.HostFilter{
		ClientID: q.filters["client_id"], SiteID: q.filters["site_id"], Role: q.filters["role"],
		Tag: q.filters["tag"], NameContains: q.filters["name_contains"], MachineID: q.filters["machine_id"],
		Page: q.fetch(),
	}
	if st, ok := q.filters["status"]; ok {
		if !slices.Contains(inventory.Statuses, inventory.Status(st)) {
			writeError(w, http.StatusBadRequest, apiError{Error: "invalid query parameters", Fields: []fieldError{{Field: "status", Message: "must be one of pending, active, retired"}}})
			return
		}
		f.Status = inventory.Status(st)
	}
	items, err := s.inv.ListHostRecords(r.Context(), f)
	if err != nil {
		s.fail(w, r, "host", err)
		return
	}
	var slugs map[string]string
	if s.health != nil {
		ids := make([]string, 0, 4)
		for _, h := range items {
			if !slices.Contains(ids, h.ClientID) {
				ids = append(ids, h.ClientID)
			}
		}
		if slugs, err = s.slugs.slugs(r.Context(), ids); err != nil {
			s.fail(w, r, "host", err)
			return
		}
	}
	bp := pageBufs.Get().(*[]byte)
	b, err := s.appendHostPage((*bp)[:0], q, items, slugs)
	if err != nil {
		pageBufs.Put(bp)
		s.fail(w, r, "host", err)
		return
	}
	writeJSONBytes(w, http.StatusOK, b)
	if cap(b) <= 1<<20 { // do not keep a huge list's buffer alive
		*bp = b
		pageBufs.Put(bp)
	}
}

// pageBufs are the buffers lists of hosts are written into, reused: a page of 100 hosts is
// about 100 kB, which growing from nothing would allocate twice over.
var pageBufs = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// appendHostPage appends the page of hosts as writePage would encode it, with health when the
// API has a tracker (slugs: client id -> slug).
func (s *server) appendHostPage(b []byte, q listQuery, items []inventory.HostRecord, slugs map[string]string) ([]byte, error) {
	var next int
	if len(items) > q.page.Limit {
		items = items[:q.page.Limit]
		next = q.page.Offset + q.page.Limit
	}
	b = append(b, `{"items":[`...)
	for i, h := range items {
		if i > 0 {
			b = append(b, ',')
		}
		var health *hosthealth.Health
		if s.health != nil {
			hh := s.health(hosthealth.Key{Client: slugs[h.ClientID], Host: h.Name})
			health = &hh
		}
		var err error
		if b, err = appendHostRecord(b, h, health, &s.facts); err != nil {
			return nil, err
		}
	}
	b = append(b, `],"limit":`...)
	b = strconv.AppendInt(b, int64(q.page.Limit), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, int64(q.page.Offset), 10)
	b = append(b, `,"next_offset":`...)
	if next > 0 {
		b = strconv.AppendInt(b, int64(next), 10)
	} else {
		b = append(b, "null"...)
	}
	return append(b, "}\n"...), nil
}

// hostViewer returns the function that presents hosts, with their health when the API has a
// tracker; the client slugs that key health are looked up once for all of hosts.
func (s *server) hostViewer(ctx context.Context, hosts []inventory.Host) (func(inventory.Host) hostView, error) {
	if s.health == nil {
		return viewHost, nil
	}
	seen := make(map[string]bool, 4)
	ids := make([]string, 0, 4)
	for _, h := range hosts {
		if !seen[h.ClientID] {
			seen[h.ClientID] = true
			ids = append(ids, h.ClientID)
		}
	}
	slugs, err := s.slugs.slugs(ctx, ids)
	if err != nil {
		return nil, err
	}
	return func(h inventory.Host) hostView {
		v := viewHost(h)
		v.Health = viewHealth(s.health(hosthealth.Key{Client: slugs[h.ClientID], Host: h.Name}))
		return v
	}, nil
}

func (s *server) writeHost(w http.ResponseWriter, r *http.Request, code int, h inventory.Host) {
	view, err := s.hostViewer(r.Context(), []inventory.Host{h})
	if err != nil {
		// The write (if any) is done; an answer without health is better than an error for it.
		s.logger.Warn("api: host health unavailable", "host_id", h.ID, "err", err)
		view = viewHost
	}
	if code == http.StatusCreated {
		created(w, "hosts", h.ID, view(h))
		return
	}
	writeJSON(w, code, view(h))
}

func (s *server) createHost(w http.ResponseWriter, r *http.Request) {
	var in hostInput
	if !decodeBody(w, r, &in, hostReadOnly) {
		return
	}
	h, err := s.inv.CreateHost(r.Context(), in.host())
	if err != nil {
		s.fail(w, r, "host", err)
		return
	}
	s.hostsChanged()
	s.writeHost(w, r, http.StatusCreated, h)
}

func (s *server) getHost(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "host")
	if !ok {
		return
	}
	h, err := s.inv.GetHost(r.Context(), id)
	if err != nil {
		s.fail(w, r, "host", err)
		return
	}
	s.writeHost(w, r, http.StatusOK, h)
}

func (s *server) updateHost(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "host")
	if !ok {
		return
	}
	var in hostInput
	if !decodeBody(w, r, &in, hostReadOnly) {
		return
	}
	cur, err := s.inv.GetHost(r.Context(), id)
	if err != nil {
		s.fail(w, r, "host", err)
		return
	}
	h := in.host()
	h.ID = id
	// The agent's fields are kept as they are (enrolment writes them).
	h.Facts, h.MachineID = cur.Facts, cur.MachineID
	if in.Status == "" {
		// Else an edit that forgets the status would send an active host back to pending.
		v := h
		if v.ClientID == "" {
			v.ClientID = cur.ClientID
		}
		invalid(w, "host", []fieldError{required("status")}, v.Validate())
		return
	}
	h, err = s.inv.UpdateHost(r.Context(), h)
	if err != nil {
		s.fail(w, r, "host", err)
		return
	}
	s.hostsChanged()
	s.writeHost(w, r, http.StatusOK, h)
}

func (s *server) deleteHost(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "host")
	if !ok {
		return
	}
	if err := s.inv.DeleteHost(r.Context(), id); err != nil {
		s.fail(w, r, "host", err)
		return
	}
	s.hostsChanged()
	w.WriteHeader(http.StatusNoContent)
}

// Services.

func (s *server) listServices(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, serviceFilters)
	if !ok {
		return
	}
	f := inventory.ServiceFilter{HostID: q.filters["host_id"], ClientID: q.filters["client_id"], Page: q.fetch()}
	if t, ok := q.filters["type"]; ok {
		st, known := inventory.ParseServiceType(t)
		if !known {
			writeError(w, http.StatusBadRequest, apiError{Error: "invalid query parameters", Fields: []fieldError{{Field: "type", Message: "is not a known service type"}}})
			return
		}
		f.Type = st
	}
	items, err := s.inv.ListServices(r.Context(), f)
	if err != nil {
		s.fail(w, r, "service", err)
		return
	}
	writePage(w, q, items, viewService)
}

func (s *server) createService(w http.ResponseWriter, r *http.Request) {
	var in serviceInput
	if !decodeBody(w, r, &in, serviceReadOnly) {
		return
	}
	sv, err := s.inv.CreateService(r.Context(), in.service())
	if err != nil {
		s.fail(w, r, "service", err)
		return
	}
	created(w, "services", sv.ID, viewService(sv))
}

func (s *server) getService(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "service")
	if !ok {
		return
	}
	sv, err := s.inv.GetService(r.Context(), id)
	if err != nil {
		s.fail(w, r, "service", err)
		return
	}
	writeJSON(w, http.StatusOK, viewService(sv))
}

func (s *server) updateService(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "service")
	if !ok {
		return
	}
	var in serviceInput
	if !decodeBody(w, r, &in, serviceReadOnly) {
		return
	}
	sv := in.service()
	sv.ID = id
	if strings.TrimSpace(in.Name) == "" {
		// Else the name would fall back to the type, renaming the service.
		fe := sv.Validate()
		if in.HostID == "" {
			fe = without(fe, "host_id") // unchanged on PUT
		}
		invalid(w, "service", []fieldError{required("name")}, fe)
		return
	}
	sv, err := s.inv.UpdateService(r.Context(), sv)
	if err != nil {
		s.fail(w, r, "service", err)
		return
	}
	writeJSON(w, http.StatusOK, viewService(sv))
}

func (s *server) deleteService(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "service")
	if !ok {
		return
	}
	if err := s.inv.DeleteService(r.Context(), id); err != nil {
		s.fail(w, r, "service", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Contracts.

func (s *server) listContracts(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, contractFilters)
	if !ok {
		return
	}
	f := inventory.ContractFilter{ClientID: q.filters["client_id"], Page: q.fetch()}
	var fe []fieldError
	if v, ok := q.filters["service"]; ok {
		o, known := inventory.ParseOffering(v)
		if !known {
			fe = append(fe, fieldError{Field: "service", Message: "is not an offering of the catalogue"})
		}
		f.Service = o
	}
	if v, ok := q.filters["active_on"]; ok {
		d, err := time.Parse(dateLayout, v)
		if err != nil {
			fe = append(fe, fieldError{Field: "active_on", Message: "must be a date, YYYY-MM-DD"})
		}
		f.ActiveOn = d
	}
	if len(fe) > 0 {
		writeError(w, http.StatusBadRequest, apiError{Error: "invalid query parameters", Fields: fe})
		return
	}
	items, err := s.inv.ListContracts(r.Context(), f)
	if err != nil {
		s.fail(w, r, "contract", err)
		return
	}
	writePage(w, q, items, viewContract)
}

func (s *server) createContract(w http.ResponseWriter, r *http.Request) {
	var in contractInput
	if !decodeBody(w, r, &in, contractReadOnly) {
		return
	}
	c, fe := in.contract()
	if len(fe) > 0 {
		invalid(w, "contract", fe, c.Validate())
		return
	}
	c, err := s.inv.CreateContract(r.Context(), c)
	if err != nil {
		s.fail(w, r, "contract", err)
		return
	}
	created(w, "contracts", c.ID, viewContract(c))
}

func (s *server) getContract(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "contract")
	if !ok {
		return
	}
	c, err := s.inv.GetContract(r.Context(), id)
	if err != nil {
		s.fail(w, r, "contract", err)
		return
	}
	writeJSON(w, http.StatusOK, viewContract(c))
}

func (s *server) updateContract(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "contract")
	if !ok {
		return
	}
	var in contractInput
	if !decodeBody(w, r, &in, contractReadOnly) {
		return
	}
	c, fe := in.contract()
	c.ID = id
	if len(fe) > 0 {
		theirs := c.Validate()
		if in.ClientID == "" {
			theirs = without(theirs, "client_id") // unchanged on PUT
		}
		invalid(w, "contract", fe, theirs)
		return
	}
	c, err := s.inv.UpdateContract(r.Context(), c)
	if err != nil {
		s.fail(w, r, "contract", err)
		return
	}
	writeJSON(w, http.StatusOK, viewContract(c))
}

func (s *server) deleteContract(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "contract")
	if !ok {
		return
	}
	if err := s.inv.DeleteContract(r.Context(), id); err != nil {
		s.fail(w, r, "contract", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
