package oncall

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// Contact is how to reach a user: an email address, a phone number for SMS, and which of the two
// the user wants to be notified by.
type Contact struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"` // a bare address, bob@example.com; "" for none
	// Phone is in E.164 form, "+" and 8 to 15 digits ("+919876543210"); spaces, hyphens, dots
	// and parentheses typed between the digits are dropped. "" for none.
	Phone string `json:"phone"`
	// Channels the user is notified by, from "email" (needs Email) and "sms" (needs Phone),
	// reported in that order.
	Channels  []string  `json:"channels"`
	UpdatedAt time.Time `json:"updated_at"`
}

// e164 is "+", a first digit that is not 0 (no country code starts with 0), and 7 to 14 more.
var e164 = regexp.MustCompile(`^\+[1-9][0-9]{7,14}$`)

// phoneSeparators are what people type between digits; they carry nothing.
var phoneSeparators = strings.NewReplacer(" ", "", "-", "", ".", "", "(", "", ")", "", "\u00a0", "")

func (c *Contact) normalize() {
	c.UserID = strings.TrimSpace(c.UserID)
	c.Email = strings.TrimSpace(c.Email)
	c.Phone = phoneSeparators.Replace(strings.TrimSpace(c.Phone))
	for i, ch := range c.Channels {
		c.Channels[i] = strings.ToLower(strings.TrimSpace(ch))
	}
}

// Validate checks c as CreateContact and UpdateContact would, without looking at the database.
func (c Contact) Validate() []config.FieldError {
	c.Channels = slices.Clone(c.Channels)
	c.normalize()
	return c.validate()
}

func (c *Contact) validate() []config.FieldError {
	var fe fieldErrs
	fe.id("user_id", c.UserID, true)
	if c.Email != "" {
		if msg := checkEmail(c.Email); msg != "" {
			fe.add("email", "%s", msg)
		}
	}
	if c.Phone != "" && !e164.MatchString(c.Phone) {
		fe.add("phone", "must be in E.164 form: + then the country code and number, 8 to 15 digits, like +919876543210")
	}
	fe.channels("channels", c.Channels)
	if slices.Contains(c.Channels, ChannelEmail) && c.Email == "" {
		fe.add("channels", "email needs an email address")
	}
	if slices.Contains(c.Channels, ChannelSMS) && c.Phone == "" {
		fe.add("channels", "sms needs a phone number")
	}
	return fe
}

// checkEmail says what is wrong with an email address, or "".
func checkEmail(s string) string {
	if len(s) > maxEmail {
		return fmt.Sprintf("is longer than %d characters", maxEmail)
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "is not an email address"
	}
	if a.Name != "" || a.Address != s {
		// "Bob <bob@example.com>" parses, but the name is the user's, kept elsewhere.
		return "give the bare address, like bob@example.com"
	}
	return ""
}

const contactCols = "user_id, email, phone, email_enabled_at, sms_enabled_at, updated_at"

func scanContact(row store.Row) (Contact, error) {
	var c Contact
	var emailOn, smsOn sql.NullInt64
	var updated int64
	if err := row.Scan(&c.UserID, &c.Email, &c.Phone, &emailOn, &smsOn, &updated); err != nil {
		return Contact{}, err
	}
	c.Channels = channelList(emailOn.Valid, smsOn.Valid)
	c.UpdatedAt = store.FromMillis(updated)
	return c, nil
}

func channelList(email, sms bool) []string {
	var l []string
	if email {
		l = append(l, ChannelEmail)
	}
	if sms {
		l = append(l, ChannelSMS)
	}
	return l
}

// enabledAt is the stored instant a channel was switched on: kept from before when it stays on,
// now when it is switched on, NULL when off.
func enabledAt(on bool, before sql.NullInt64, now int64) any {
	switch {
	case !on:
		return nil
	case before.Valid:
		return before.Int64
	}
	return now
}

// CreateContact adds the contact details of a user who has none.
func (s *Store) CreateContact(ctx context.Context, c Contact) (Contact, error) {
	return s.writeContact(ctx, c, "creating contact", func(found bool) error {
		if found {
			return invalid(uniqueFields["user_contacts_user_id_key"])
		}
		return nil
	})
}

// UpdateContact replaces the contact details of c.UserID.
func (s *Store) UpdateContact(ctx context.Context, c Contact) (Contact, error) {
	return s.writeContact(ctx, c, "updating contact", func(found bool) error {
		if !found {
			return fmt.Errorf("contact of user %q: %w", c.UserID, ErrNotFound)
		}
		return nil
	})
}

// SetContact creates or replaces the contact details of c.UserID.
func (s *Store) SetContact(ctx context.Context, c Contact) (Contact, error) {
	return s.writeContact(ctx, c, "setting contact", func(bool) error { return nil })
}

func (s *Store) writeContact(ctx context.Context, c Contact, what string, check func(found bool) error) (Contact, error) {
	c.Channels = slices.Clone(c.Channels)
	c.normalize()
	fe := fieldErrs(c.validate())
	var out Contact
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := refCheck(ctx, tx, &fe, "users", "user_id", "user", c.UserID); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		var emailOn, smsOn sql.NullInt64
		err := tx.QueryRowContext(ctx, "SELECT email_enabled_at, sms_enabled_at FROM user_contacts WHERE user_id = $1", c.UserID).
			Scan(&emailOn, &smsOn)
		found := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := check(found); err != nil {
			return err
		}
		now := store.Millis(s.clock())
		row := tx.QueryRowContext(ctx, `INSERT INTO user_contacts (user_id, email, phone, email_enabled_at, sms_enabled_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, phone = excluded.phone,
				email_enabled_at = excluded.email_enabled_at, sms_enabled_at = excluded.sms_enabled_at, updated_at = excluded.updated_at
			RETURNING `+contactCols,
			c.UserID, c.Email, c.Phone,
			enabledAt(slices.Contains(c.Channels, ChannelEmail), emailOn, now),
			enabledAt(slices.Contains(c.Channels, ChannelSMS), smsOn, now), now)
		out, err = scanContact(row)
		return err
	})
	return out, dbError(what, err)
}

// GetContact returns the contact details of the user with userID.
func (s *Store) GetContact(ctx context.Context, userID string) (Contact, error) {
	c, err := scanContact(s.db.QueryRowContext(ctx, "SELECT "+contactCols+" FROM user_contacts WHERE user_id = $1", userID))
	if errors.Is(err, sql.ErrNoRows) {
		return Contact{}, fmt.Errorf("contact of user %q: %w", userID, ErrNotFound)
	}
	return c, dbError("reading contact", err)
}

// ListContacts returns every user's contact details, by username.
func (s *Store) ListContacts(ctx context.Context) ([]Contact, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT c.user_id, c.email, c.phone, c.email_enabled_at, c.sms_enabled_at, c.updated_at
		FROM user_contacts c JOIN users u ON u.id = c.user_id ORDER BY u.username_fold, u.id`)
	return scanAll(rows, err, scanContact, "listing contacts")
}

// DeleteContact deletes the contact details of the user with userID (the user stays).
func (s *Store) DeleteContact(ctx context.Context, userID string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM user_contacts WHERE user_id = $1", userID)
	if err != nil {
		return dbError("deleting contact", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("contact of user %q: %w", userID, ErrNotFound)
	}
	return nil
}
