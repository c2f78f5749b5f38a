package api

import (
	"math"
	"time"

	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
)

// The API's records are their own types rather than the inventory's, so that what the API
// promises (and openapi.yaml documents) changes only when this file does: absent values are null
// (a host at no site, a contract without an end), dates are dates, and lists are never null.

const dateLayout = "2006-01-02"

type clientView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Slug      string    `json:"slug"`
	Notes     string    `json:"notes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func viewClient(c inventory.Client) clientView {
	return clientView{ID: c.ID, Name: c.Name, Slug: c.Slug, Notes: c.Notes, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

// clientInput is what POST and PUT accept.
type clientInput struct {
	Name  string `json:"name"`
	Slug  string `json:"slug"`
	Notes string `json:"notes"`
}

type siteView struct {
	ID        string    `json:"id"`
	ClientID  string    `json:"client_id"`
	Name      string    `json:"name"`
	Address   string    `json:"address"`
	Notes     string    `json:"notes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func viewSite(s inventory.Site) siteView {
	return siteView{ID: s.ID, ClientID: s.ClientID, Name: s.Name, Address: s.Address, Notes: s.Notes, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

type siteInput struct {
	ClientID string `json:"client_id"`
	Name     string `json:"name"`
	Address  string `json:"address"`
	Notes    string `json:"notes"`
}

type hostView struct {
	ID         string      `json:"id"`
	ClientID   string      `json:"client_id"`
	SiteID     *string     `json:"site_id"`
	Name       string      `json:"name"`
	Addresses  []string    `json:"addresses"`
	OS         string      `json:"os"`
	Role       string      `json:"role"`
	Tags       []string    `json:"tags"`
	Facts      factsView   `json:"facts"`
	AgentURL   string      `json:"agent_url"`
	Status     string      `json:"status"`
	MachineID  *string     `json:"machine_id"`
	EnrolledAt *time.Time  `json:"enrolled_at"`
	CreatedAt  time.Time   `json:"created_at"`
	UpdatedAt  time.Time   `json:"updated_at"`
	Health     *healthView `json:"health,omitempty"`
}

type factsView struct {
	Hostname    string            `json:"hostname"`
	Kernel      string            `json:"kernel"`
	OSRelease   string            `json:"os_release"`
	Arch        string            `json:"arch"`
	CPUModel    string            `json:"cpu_model"`
	Cores       int               `json:"cores"`
	MemoryBytes int64             `json:"memory_bytes"`
	Extra       map[string]string `json:"extra"`
}

func viewHost(h inventory.Host) hostView {
	v := hostView{
		ID: h.ID, ClientID: h.ClientID, SiteID: nullable(h.SiteID), Name: h.Name,
		Addresses: list(h.Addresses), OS: h.OS, Role: h.Role, Tags: list(h.Tags),
		Facts: factsView{
			Hostname: h.Facts.Hostname, Kernel: h.Facts.Kernel, OSRelease: h.Facts.OSRelease, Arch: h.Facts.Arch,
			CPUModel: h.Facts.CPUModel, Cores: h.Facts.Cores, MemoryBytes: h.Facts.MemoryBytes, Extra: h.Facts.Extra,
		},
		AgentURL: h.AgentURL, Status: string(h.Status), MachineID: nullable(h.MachineID),
		CreatedAt: h.CreatedAt, UpdatedAt: h.UpdatedAt,
	}
	if v.Facts.Extra == nil {
		v.Facts.Extra = map[string]string{}
	}
	if !h.EnrolledAt.IsZero() {
		t := h.EnrolledAt
		v.EnrolledAt = &t
	}
	return v
}

// hostInput is what POST and PUT accept: the operator's fields. The facts and machine id are
// the agent's, written by enrolment.
type hostInput struct {
	ClientID  string   `json:"client_id"`
	SiteID    *string  `json:"site_id"`
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	OS        string   `json:"os"`
	Role      string   `json:"role"`
	Tags      []string `json:"tags"`
	AgentURL  string   `json:"agent_url"`
	Status    string   `json:"status"`
}

func (in hostInput) host() inventory.Host {
	h := inventory.Host{
		ClientID: in.ClientID, Name: in.Name, Addresses: in.Addresses, OS: in.OS, Role: in.Role,
		Tags: in.Tags, AgentURL: in.AgentURL, Status: inventory.Status(in.Status),
	}
	if in.SiteID != nil {
		h.SiteID = *in.SiteID
	}
	return h
}

// healthView is a host's health. Every figure the hub does not know is null, never a number
// standing in for "unknown" (and never NaN, which JSON cannot carry).
type healthView struct {
	State                 string     `json:"state"` // up, down, pending, unmonitored
	Up                    bool       `json:"up"`
	LastScrape            *time.Time `json:"last_scrape"`
	LastError             *string    `json:"last_error"`
	ScrapeDurationSeconds *float64   `json:"scrape_duration_seconds"`
	CPU                   *float64   `json:"cpu"`
	Memory                *float64   `json:"memory"`
	Disk                  *float64   `json:"disk"`
	Load1                 *float64   `json:"load1"`
	Cores                 *float64   `json:"cores"`
}

func viewHealth(h hosthealth.Health) *healthView {
	v := &healthView{
		State: h.State(), Up: h.Up, LastError: nullable(h.LastError),
		CPU: finite(h.CPU), Memory: finite(h.Memory), Disk: finite(h.Disk), Load1: finite(h.Load1), Cores: finite(h.Cores),
	}
	if !h.LastScrape.IsZero() {
		t := h.LastScrape.UTC()
		v.LastScrape = &t
		v.ScrapeDurationSeconds = finite(h.ScrapeDuration.Seconds())
	}
	return v
}

type serviceView struct {
	ID             string    `json:"id"`
	HostID         string    `json:"host_id"`
	Type           string    `json:"type"`
	Name           string    `json:"name"`
	Target         string    `json:"target"`
	CredentialsRef string    `json:"credentials_ref"`
	Notes          string    `json:"notes"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func viewService(s inventory.Service) serviceView {
	return serviceView{
		ID: s.ID, HostID: s.HostID, Type: string(s.Type), Name: s.Name, Target: s.Target,
		CredentialsRef: s.CredentialsRef, Notes: s.Notes, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
}

type serviceInput struct {
	HostID         string `json:"host_id"`
	Type           string `json:"type"`
	Name           string `json:"name"`
	Target         string `json:"target"`
	CredentialsRef string `json:"credentials_ref"`
	Notes          string `json:"notes"`
}

func (in serviceInput) service() inventory.Service {
	return inventory.Service{
		HostID: in.HostID, Type: inventory.ServiceType(in.Type), Name: in.Name, Target: in.Target,
		CredentialsRef: in.CredentialsRef, Notes: in.Notes,
	}
}

type contractView struct {
	ID              string    `json:"id"`
	ClientID        string    `json:"client_id"`
	Name            string    `json:"name"`
	NodesContracted int       `json:"nodes_contracted"`
	Services        []string  `json:"services"`
	RateMinor       int64     `json:"rate_minor"`
	Currency        string    `json:"currency"`
	StartDate       string    `json:"start_date"`
	EndDate         *string   `json:"end_date"`
	Notes           string    `json:"notes"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

func viewContract(c inventory.Contract) contractView {
	v := contractView{
		ID: c.ID, ClientID: c.ClientID, Name: c.Name, NodesContracted: c.NodesContracted,
		Services: make([]string, len(c.Services)), RateMinor: c.RateMinor, Currency: c.Currency,
		StartDate: c.StartDate.Format(dateLayout), Notes: c.Notes, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
	}
	for i, s := range c.Services {
		v.Services[i] = string(s)
	}
	if !c.EndDate.IsZero() {
		v.EndDate = nullable(c.EndDate.Format(dateLayout))
	}
	return v
}

type contractInput struct {
	ClientID        string   `json:"client_id"`
	Name            string   `json:"name"`
	NodesContracted int      `json:"nodes_contracted"`
	Services        []string `json:"services"`
	RateMinor       int64    `json:"rate_minor"`
	Currency        string   `json:"currency"`
	StartDate       string   `json:"start_date"`
	EndDate         *string  `json:"end_date"`
	Notes           string   `json:"notes"`
}

// contract converts the input, returning problems with the dates, which the inventory cannot see
// once they are time.Time values.
func (in contractInput) contract() (inventory.Contract, []fieldError) {
	c := inventory.Contract{
		ClientID: in.ClientID, Name: in.Name, NodesContracted: in.NodesContracted, RateMinor: in.RateMinor,
		Currency: in.Currency, Notes: in.Notes,
	}
	for _, s := range in.Services {
		c.Services = append(c.Services, inventory.Offering(s))
	}
	var fe []fieldError
	parse := func(field, s string) time.Time {
		if s == "" {
			return time.Time{}
		}
		t, err := time.Parse(dateLayout, s)
		if err != nil {
			fe = append(fe, fieldError{Field: field, Message: "must be a date, YYYY-MM-DD"})
		}
		return t
	}
	c.StartDate = parse("start_date", in.StartDate)
	if in.EndDate != nil {
		c.EndDate = parse("end_date", *in.EndDate)
	}
	return c, fe
}

// Read-only fields: what a record has that its input has not. A caller that sends back a record
// it read is told which fields to leave out.
var (
	clientReadOnly   = []string{"id", "created_at", "updated_at"}
	siteReadOnly     = clientReadOnly
	hostReadOnly     = []string{"id", "facts", "machine_id", "enrolled_at", "created_at", "updated_at", "health"}
	serviceReadOnly  = clientReadOnly
	contractReadOnly = clientReadOnly
)

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func list(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// finite returns f, or nil when f is NaN or infinite (unknown).
func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

// page is a list answer.
type page[T any] struct {
	Items      []T  `json:"items"`
	Limit      int  `json:"limit"`
	Offset     int  `json:"offset"`
	NextOffset *int `json:"next_offset"`
}
