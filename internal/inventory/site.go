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

// Site is a place where a client's hosts run: a data centre, an office, a cloud region.
type Site struct {
	ID        string    `json:"id"`
	ClientID  string    `json:"client_id"`
	Name      string    `json:"name"`
	Address   string    `json:"address"`
	Notes     string    `json:"notes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (s *Site) normalize() {
	s.Name = strings.TrimSpace(s.Name)
	s.Address = strings.TrimSpace(s.Address)
}

// Validate checks s as Create and Update would, without looking at the database.
func (s Site) Validate() []config.FieldError {
	s.normalize()
	return s.validate()
}

func (s *Site) validate() []config.FieldError {
	var fe fieldErrs
	fe.id("client_id", s.ClientID, true)
	fe.text("name", s.Name, true, maxName)
	fe.multiline("address", s.Address, maxAddress)
	fe.multiline("notes", s.Notes, maxNotes)
	return fe
}

// SiteFilter selects sites for ListSites; zero fields do not filter.
type SiteFilter struct {
	ClientID     string
	NameContains string
	Page
}

const siteCols = "id, client_id, name, address, notes, created_at, updated_at"

func scanSite(row store.Row) (Site, error) {
	var s Site
	var created, updated int64
	if err := row.Scan(&s.ID, &s.ClientID, &s.Name, &s.Address, &s.Notes, &created, &updated); err != nil {
		return Site{}, err
	}
	s.CreatedAt, s.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return s, nil
}

// CreateSite adds a site to its client.
func (inv *Inventory) CreateSite(ctx context.Context, s Site) (Site, error) {
	defer inv.changed()
	s.normalize()
	fe := s.validate()
	var out Site
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := refCheck(ctx, tx, &fe, "clients", "client_id", s.ClientID); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		s.ID = store.NewID()
		var err error
		out, err = scanSite(tx.QueryRowContext(ctx, `INSERT INTO sites (id, client_id, name, name_fold, address, notes, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING `+siteCols,
			s.ID, s.ClientID, s.Name, fold(s.Name), s.Address, s.Notes, store.Millis(inv.clock())))
		return err
	})
	return out, dbError("creating site", err)
}

// refCheck adds a field error to fe when id is given but no row of table has it. An empty id is
// left to validation (required or not).
func refCheck(ctx context.Context, q querier, fe *[]config.FieldError, table, field, id string) error {
	if id == "" {
		return nil
	}
	ok, err := exists(ctx, q, table, id)
	if err != nil {
		return err
	}
	if !ok {
		*fe = append(*fe, config.Errorf(field, "no %s has id %q", strings.TrimSuffix(table, "s"), id))
	}
	return nil
}

// GetSite returns the site with id.
func (inv *Inventory) GetSite(ctx context.Context, id string) (Site, error) {
	return inv.getSite(ctx, inv.db, id)
}

func (inv *Inventory) getSite(ctx context.Context, q querier, id string) (Site, error) {
	s, err := scanSite(q.QueryRowContext(ctx, "SELECT "+siteCols+" FROM sites WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Site{}, fmt.Errorf("site %q: %w", id, ErrNotFound)
	}
	return s, dbError("reading site", err)
}

// ListSites returns the sites f selects, by name.
func (inv *Inventory) ListSites(ctx context.Context, f SiteFilter) ([]Site, error) {
	var w where
	if f.ClientID != "" {
		w.add("client_id = ?", f.ClientID)
	}
	if f.NameContains != "" {
		w.add("name_fold LIKE ? ESCAPE '!'", likeContains(fold(f.NameContains)))
	}
	rows, err := inv.db.QueryContext(ctx, "SELECT "+siteCols+" FROM sites"+w.sql()+" ORDER BY name_fold, id"+w.page(f.Page), w.args...)
	return scanAll(rows, err, scanSite, "listing sites")
}

// UpdateSite replaces the name, address and notes of the site with s.ID. s.ClientID may be empty
// (unchanged) but not another client.
func (inv *Inventory) UpdateSite(ctx context.Context, s Site) (Site, error) {
	defer inv.changed()
	s.normalize()
	var out Site
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		cur, err := inv.getSite(ctx, tx, s.ID)
		if err != nil {
			return err
		}
		if err := sameParent("client_id", "site", s.ClientID, cur.ClientID); err != nil {
			return err
		}
		s.ClientID = cur.ClientID
		if err := invalid(s.validate()...); err != nil {
			return err
		}
		out, err = scanSite(tx.QueryRowContext(ctx, `UPDATE sites SET name = $2, name_fold = $3, address = $4, notes = $5, updated_at = $6
			WHERE id = $1 RETURNING `+siteCols,
			s.ID, s.Name, fold(s.Name), s.Address, s.Notes, store.Millis(inv.clock())))
		return err
	})
	return out, dbError("updating site", err)
}

// sameParent refuses an update that would move a record to another parent.
func sameParent(field, what, given, current string) error {
	if given != "" && given != current {
		return invalid(config.Errorf(field, "a %s cannot be moved (it belongs to %q)", what, current))
	}
	return nil
}

// DeleteSite deletes the site with id, refusing (ErrInUse) while hosts are at it.
func (inv *Inventory) DeleteSite(ctx context.Context, id string) error {
	defer inv.changed()
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		s, err := inv.getSite(ctx, tx, id)
		if err != nil {
			return err
		}
		n, err := count(ctx, tx, "hosts", "site_id", id)
		if err != nil {
			return err
		}
		if n > 0 {
			what := "1 host"
			if n > 1 {
				what = fmt.Sprintf("%d hosts", n)
			}
			return fmt.Errorf("site %q still has %s: %w; move or delete them first", s.Name, what, ErrInUse)
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM sites WHERE id = $1", id)
		return err
	})
	return dbError("deleting site", err)
}
