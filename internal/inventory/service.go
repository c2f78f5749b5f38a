package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// ServiceType is a kind of monitored server or service: the catalogue of section 4 of the
// ServerSage document.
type ServiceType string

// ServiceTypes is the catalogue of monitored types, in the document's order.
var ServiceTypes = []ServiceType{
	"linux", "windows",
	"tomcat", "nginx", "apache",
	"mysql", "postgres", "mssql", "mongodb", "oracle",
	"iis", "activedirectory", "redis",
	"keycloak", "rhsso", "jboss", "wildfly",
	"kafka", "rabbitmq", "ibmmq", "msmq",
}

// ParseServiceType returns the catalogue type named s (ignoring case), or false.
func ParseServiceType(s string) (ServiceType, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, t := range ServiceTypes {
		if string(t) == s {
			return t, true
		}
	}
	return "", false
}

// Service is something monitored on a host: a database, a web server, the OS itself.
type Service struct {
	ID     string      `json:"id"`
	HostID string      `json:"host_id"`
	Type   ServiceType `json:"type"`
	Name   string      `json:"name"` // unique on the host; defaults to the type
	// Target is where to probe it: host:port, or a URL for HTTP-based services. Empty for
	// services measured on the host itself (linux, windows).
	Target string `json:"target"`
	// CredentialsRef says where the credentials to reach it are: "env:NAME" or "file:/path",
	// resolved where they are used. Never the secret itself.
	CredentialsRef string    `json:"credentials_ref"`
	Notes          string    `json:"notes"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func (s *Service) normalize() {
	if t, ok := ParseServiceType(string(s.Type)); ok {
		s.Type = t
	}
	s.Name = strings.TrimSpace(s.Name)
	if s.Name == "" {
		s.Name = string(s.Type)
	}
	s.Target = strings.TrimSpace(s.Target)
	s.CredentialsRef = strings.TrimSpace(s.CredentialsRef)
}

// Validate checks s as Create and Update would, without looking at the database.
func (s Service) Validate() []config.FieldError {
	s.normalize()
	return s.validate()
}

func (s *Service) validate() []config.FieldError {
	var fe fieldErrs
	fe.id("host_id", s.HostID, true)
	if s.Type == "" {
		fe.add("type", "is required")
	} else if _, ok := ParseServiceType(string(s.Type)); !ok {
		fe.add("type", "unknown service type %q; known: %s", s.Type, joinTypes())
	}
	fe.text("name", s.Name, true, maxName)
	if s.Target != "" {
		if len(s.Target) > maxURL {
			fe.add("target", "is longer than %d characters", maxURL)
		} else if msg := checkTarget(s.Target); msg != "" {
			fe.add("target", "%s", msg)
		}
	}
	if s.CredentialsRef != "" {
		if len(s.CredentialsRef) > maxURL {
			fe.add("credentials_ref", "is longer than %d characters", maxURL)
		} else if msg := checkCredentialsRef(s.CredentialsRef); msg != "" {
			fe.add("credentials_ref", "%s", msg)
		}
	}
	fe.multiline("notes", s.Notes, maxNotes)
	return fe
}

func joinTypes() string {
	l := make([]string, len(ServiceTypes))
	for i, t := range ServiceTypes {
		l[i] = string(t)
	}
	return strings.Join(l, ", ")
}

// ServiceFilter selects services for ListServices; zero fields do not filter.
type ServiceFilter struct {
	HostID   string
	ClientID string // services on any host of this client
	Type     ServiceType
	Page
}

const serviceCols = "id, host_id, type, name, target, credentials_ref, notes, created_at, updated_at"

// serviceColsS is serviceCols qualified for the join with hosts.
var serviceColsS = "s." + strings.ReplaceAll(serviceCols, ", ", ", s.")

func scanService(row store.Row) (Service, error) {
	var s Service
	var typ string
	var created, updated int64
	if err := row.Scan(&s.ID, &s.HostID, &typ, &s.Name, &s.Target, &s.CredentialsRef, &s.Notes, &created, &updated); err != nil {
		return Service{}, err
	}
	s.Type = ServiceType(typ)
	s.CreatedAt, s.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return s, nil
}

// CreateService adds a service to its host.
func (inv *Inventory) CreateService(ctx context.Context, s Service) (Service, error) {
	defer inv.changed()
	s.normalize()
	fe := s.validate()
	var out Service
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := refCheck(ctx, tx, &fe, "hosts", "host_id", s.HostID); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		s.ID = store.NewID()
		var err error
		out, err = scanService(tx.QueryRowContext(ctx, `INSERT INTO services (id, host_id, type, name, name_fold, target, credentials_ref, notes, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING `+serviceCols,
			s.ID, s.HostID, string(s.Type), s.Name, fold(s.Name), s.Target, s.CredentialsRef, s.Notes, store.Millis(inv.clock())))
		return err
	})
	return out, dbError("creating service", err)
}

// GetService returns the service with id.
func (inv *Inventory) GetService(ctx context.Context, id string) (Service, error) {
	return inv.getService(ctx, inv.db, id)
}

func (inv *Inventory) getService(ctx context.Context, q querier, id string) (Service, error) {
	s, err := scanService(q.QueryRowContext(ctx, "SELECT "+serviceCols+" FROM services WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Service{}, fmt.Errorf("service %q: %w", id, ErrNotFound)
	}
	return s, dbError("reading service", err)
}

// ListServices returns the services f selects, by host and name.
func (inv *Inventory) ListServices(ctx context.Context, f ServiceFilter) ([]Service, error) {
	var w where
	from := " FROM services s"
	if f.ClientID != "" {
		from += " JOIN hosts h ON h.id = s.host_id"
		w.add("h.client_id = ?", f.ClientID)
	}
	if f.HostID != "" {
		w.add("s.host_id = ?", f.HostID)
	}
	if f.Type != "" {
		w.add("s.type = ?", string(f.Type))
	}
	rows, err := inv.db.QueryContext(ctx, "SELECT "+serviceColsS+from+w.sql()+" ORDER BY s.host_id, s.name_fold, s.id"+w.page(f.Page), w.args...)
	return scanAll(rows, err, scanService, "listing services")
}

// UpdateService replaces the type, name, target, credentials reference and notes of the service
// with s.ID. s.HostID may be empty (unchanged) but not another host.
func (inv *Inventory) UpdateService(ctx context.Context, s Service) (Service, error) {
	defer inv.changed()
	s.normalize()
	var out Service
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		cur, err := inv.getService(ctx, tx, s.ID)
		if err != nil {
			return err
		}
		if err := sameParent("host_id", "service", s.HostID, cur.HostID); err != nil {
			return err
		}
		s.HostID = cur.HostID
		if err := invalid(s.validate()...); err != nil {
			return err
		}
		out, err = scanService(tx.QueryRowContext(ctx, `UPDATE services SET type = $2, name = $3, name_fold = $4, target = $5,
				credentials_ref = $6, notes = $7, updated_at = $8
			WHERE id = $1 RETURNING `+serviceCols,
			s.ID, string(s.Type), s.Name, fold(s.Name), s.Target, s.CredentialsRef, s.Notes, store.Millis(inv.clock())))
		return err
	})
	return out, dbError("updating service", err)
}

// DeleteService deletes the service with id.
func (inv *Inventory) DeleteService(ctx context.Context, id string) error {
	defer inv.changed()
	return deleteByID(ctx, inv.db, "services", "service", id)
}

func deleteByID(ctx context.Context, db *store.DB, table, what, id string) error {
	res, err := db.ExecContext(ctx, "DELETE FROM "+table+" WHERE id = $1", id)
	if err != nil {
		return dbError("deleting "+what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return dbError("deleting "+what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
	}
	return nil
}
