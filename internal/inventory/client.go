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

// Client is a customer of the MSP (NetBox's tenant): the owner of sites, hosts and contracts.
type Client struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Slug      string    `json:"slug"` // URL-friendly, unique; derived from the name when empty
	Notes     string    `json:"notes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (c *Client) normalize() {
	c.Name = strings.TrimSpace(c.Name)
	c.Slug = strings.TrimSpace(c.Slug)
	if c.Slug == "" {
		c.Slug = slugify(c.Name)
	}
}

// Validate checks c as Create and Update would (after trimming and deriving the slug).
func (c Client) Validate() []config.FieldError {
	c.normalize()
	return c.validate()
}

func (c *Client) validate() []config.FieldError {
	var fe fieldErrs
	fe.text("name", c.Name, true, maxName)
	switch {
	case c.Slug == "" && c.Name != "":
		fe.add("slug", "cannot be derived from the name; give one (a-z, 0-9 and -)")
	case c.Slug == "":
	case len(c.Slug) > maxSlug:
		fe.add("slug", "is longer than %d characters", maxSlug)
	case !slugRE.MatchString(c.Slug):
		fe.add("slug", "must be lower-case letters and digits in words joined by single hyphens, like acme-corp")
	}
	fe.multiline("notes", c.Notes, maxNotes)
	return fe
}

// ClientFilter selects clients for ListClients; zero fields do not filter.
type ClientFilter struct {
	NameContains string // case-insensitive substring of the name
	Page
}

const clientCols = "id, name, slug, notes, created_at, updated_at"

func scanClient(row store.Row) (Client, error) {
	var c Client
	var created, updated int64
	if err := row.Scan(&c.ID, &c.Name, &c.Slug, &c.Notes, &created, &updated); err != nil {
		return Client{}, err
	}
	c.CreatedAt, c.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return c, nil
}

// CreateClient adds a client; ID and times are set by the inventory.
func (inv *Inventory) CreateClient(ctx context.Context, c Client) (Client, error) {
	defer inv.changed()
	c.normalize()
	if err := invalid(c.validate()...); err != nil {
		return Client{}, err
	}
	c.ID = store.NewID()
	now := inv.clock()
	row := inv.db.QueryRowContext(ctx, `INSERT INTO clients (id, name, name_fold, slug, notes, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING `+clientCols,
		c.ID, c.Name, fold(c.Name), c.Slug, c.Notes, store.Millis(now))
	out, err := scanClient(row)
	return out, dbError("creating client", err)
}

// GetClient returns the client with id.
func (inv *Inventory) GetClient(ctx context.Context, id string) (Client, error) {
	return inv.getClient(ctx, inv.db, id)
}

func (inv *Inventory) getClient(ctx context.Context, q querier, id string) (Client, error) {
	c, err := scanClient(q.QueryRowContext(ctx, "SELECT "+clientCols+" FROM clients WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Client{}, fmt.Errorf("client %q: %w", id, ErrNotFound)
	}
	return c, dbError("reading client", err)
}

// GetClientBySlug returns the client with slug.
func (inv *Inventory) GetClientBySlug(ctx context.Context, slug string) (Client, error) {
	c, err := scanClient(inv.db.QueryRowContext(ctx, "SELECT "+clientCols+" FROM clients WHERE slug = $1", slug))
	if errors.Is(err, sql.ErrNoRows) {
		return Client{}, fmt.Errorf("client with slug %q: %w", slug, ErrNotFound)
	}
	return c, dbError("reading client", err)
}

// ListClients returns the clients f selects, by name.
func (inv *Inventory) ListClients(ctx context.Context, f ClientFilter) ([]Client, error) {
	var w where
	if f.NameContains != "" {
		w.add("name_fold LIKE ? ESCAPE '!'", likeContains(fold(f.NameContains)))
	}
	q := "SELECT " + clientCols + " FROM clients" + w.sql() + " ORDER BY name_fold, id" + w.page(f.Page)
	rows, err := inv.db.QueryContext(ctx, q, w.args...)
	return scanAll(rows, err, scanClient, "listing clients")
}

// UpdateClient replaces the name, slug and notes of the client with c.ID.
func (inv *Inventory) UpdateClient(ctx context.Context, c Client) (Client, error) {
	defer inv.changed()
	c.normalize()
	if err := invalid(c.validate()...); err != nil {
		return Client{}, err
	}
	row := inv.db.QueryRowContext(ctx, `UPDATE clients SET name = $2, name_fold = $3, slug = $4, notes = $5, updated_at = $6
		WHERE id = $1 RETURNING `+clientCols,
		c.ID, c.Name, fold(c.Name), c.Slug, c.Notes, store.Millis(inv.clock()))
	out, err := scanClient(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Client{}, fmt.Errorf("client %q: %w", c.ID, ErrNotFound)
	}
	return out, dbError("updating client", err)
}

// DeleteClient deletes the client with id, refusing (ErrInUse) while it has sites, hosts or
// contracts.
func (inv *Inventory) DeleteClient(ctx context.Context, id string) error {
	defer inv.changed()
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		c, err := inv.getClient(ctx, tx, id)
		if err != nil {
			return err
		}
		var left []string
		for _, dep := range []struct{ table, one, many string }{
			{"hosts", "host", "hosts"}, {"sites", "site", "sites"}, {"contracts", "contract", "contracts"},
		} {
			n, err := count(ctx, tx, dep.table, "client_id", id)
			if err != nil {
				return err
			}
			switch {
			case n == 1:
				left = append(left, "1 "+dep.one)
			case n > 1:
				left = append(left, fmt.Sprintf("%d %s", n, dep.many))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("client %q still has %s: %w; delete or move them first", c.Name, joinAnd(left), ErrInUse)
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM clients WHERE id = $1", id)
		return err
	})
	return dbError("deleting client", err)
}

// joinAnd joins ["a", "b", "c"] as "a, b and c".
func joinAnd(l []string) string {
	if len(l) <= 1 {
		return strings.Join(l, "")
	}
	return strings.Join(l[:len(l)-1], ", ") + " and " + l[len(l)-1]
}
