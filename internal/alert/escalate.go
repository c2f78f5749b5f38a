package alert

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/serversage/sage/internal/notify"
	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/store"
)

// escalationTick is the fallback period of the escalation loop; changes (a new incident, an ack,
// a silence) wake it at once, so this only bounds how late a wait step's end is noticed.
const escalationTick = time.Second

// Escalation is what the engine needs to notify people.
type Escalation struct {
	OnCall *oncall.Store
	// Dispatcher is woken after notifications are enqueued; nil in tests that only read the outbox.
	Dispatcher interface{ Wake() }
	// Webhooks are the names of the configured webhooks; each receives every incident's firing,
	// acknowledgement and resolution, as Alertmanager's webhook receiver would.
	Webhooks []string
}

// SetEscalation enables notifications and escalation.
func (e *Engine) SetEscalation(x Escalation) { e.esc = &x }

// RunEscalation drives open incidents through their policies until ctx ends: at once when woken,
// else every second. Its state lives in the incident rows and the outbox, not in memory, so a hub
// killed at any point resumes at the right step and sends nothing twice (the step's state change
// and its notifications commit together, and notifications are deduplicated by incident, fire,
// step, repeat, recipient and channel).
func (e *Engine) RunEscalation(ctx context.Context) {
	t := time.NewTicker(escalationTick)
	defer t.Stop()
	for {
		if err := e.EscalateOnce(ctx); err != nil && ctx.Err() == nil {
			if store.IsUnavailable(err) {
				e.logger.Warn("escalation paused: state store unavailable", "err", err)
			} else {
				e.logger.Error("escalation pass failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.wake:
		}
	}
}

// EscalateOnce runs one pass: applies silences to open incidents, then advances every incident
// that is due.
func (e *Engine) EscalateOnce(ctx context.Context) error {
	if e.esc == nil {
		return nil
	}
	now := e.now()
	if err := e.applySilences(ctx, now); err != nil {
		return err
	}
	rows, err := e.db.QueryContext(ctx, "SELECT "+incidentCols+` FROM incidents
		WHERE status = 'firing' AND suppressed_by = '' AND esc_done_at IS NULL AND esc_wait_until <= $1`, store.Millis(now))
	due, err := store.ScanAll(rows, err, scanIncident)
	if err != nil {
		return fmt.Errorf("alert: listing incidents to escalate: %w", err)
	}
	var errs []error
	for _, in := range due {
		if err := e.escalate(ctx, in, now); err != nil {
			errs = append(errs, fmt.Errorf("incident %s: %w", in.ID, err))
		}
	}
	return errors.Join(errs...)
}

// applySilences suppresses open incidents that an active silence now matches (one created after
// they fired) and releases those whose silence has ended, so their escalation starts.
func (e *Engine) applySilences(ctx context.Context, now time.Time) error {
	sil, err := e.activeSilences(ctx, e.db, now)
	if err != nil {
		return fmt.Errorf("alert: reading silences: %w", err)
	}
	open, err := e.ListIncidents(ctx, IncidentFilter{Open: true})
	if err != nil {
		return err
	}
	changed := false
	for _, in := range open {
		var match string
		for _, s := range sil {
			if s.matches(in.Labels, in.ClientID, in.HostID) && (match == "" || s.ID == in.SuppressedBy) {
				match = s.ID
			}
		}
		if match == in.SuppressedBy {
			continue
		}
		kind, detail := EventSuppressed, map[string]any{"silence": match}
		if match == "" {
			kind, detail = EventUnsuppressed, map[string]any{"silence": in.SuppressedBy}
		}
		if err := e.db.Tx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, "UPDATE incidents SET suppressed_by = $2, updated_at = $3 WHERE id = $1 AND suppressed_by = $4",
				in.ID, match, store.Millis(now), in.SuppressedBy)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return nil
			}
			changed = true
			return addEvent(ctx, tx, in.ID, now, kind, "", detail)
		}); err != nil {
			return fmt.Errorf("alert: applying silences to %s: %w", in.ID, err)
		}
	}
	if changed && e.onIncident != nil {
		e.onIncident()
	}
	return nil
}

// escalate advances one incident's policy and enqueues what it asks for, in one transaction.
func (e *Engine) escalate(ctx context.Context, in Incident, now time.Time) error {
	pol, err := e.policyOf(ctx, in)
	if err != nil {
		return err
	}
	st := oncall.State{Step: in.EscStep, Repeats: in.EscRepeats, WaitUntil: in.EscWaitUntil}
	next, actions := pol.Advance(st, now, false)

	// Recipients are looked up before the transaction: SQLite allows one writer, and the rota
	// reads need no lock.
	type target struct {
		action oncall.Action
		people []oncall.Person
	}
	var targets []target
	for _, a := range actions {
		var people []oncall.Person
		switch a.Kind {
		case oncall.KindNotifyTier:
			people, err = e.esc.OnCall.OnCall(ctx, a.Tier, in.ClientID, now)
		case oncall.KindNotifyUser:
			var p oncall.Person
			p, err = e.esc.OnCall.Person(ctx, a.UserID)
			people = []oncall.Person{p}
		}
		if err != nil && !errors.Is(err, oncall.ErrNotFound) {
			return fmt.Errorf("finding recipients of step %d: %w", a.Step+1, err)
		}
		targets = append(targets, target{a, people})
	}
	firstNotify := firstNotifyStep(pol)
	enqueued := 0
	err = e.db.Tx(ctx, func(tx *sql.Tx) error {
		var done any
		if next.Done {
			done = store.Millis(now)
		}
		var wait int64
		if !next.WaitUntil.IsZero() {
			wait = store.Millis(next.WaitUntil)
		}
		// Optimistic: only if nobody (another hub, an ack) moved the incident since it was read.
		res, err := tx.ExecContext(ctx, `UPDATE incidents SET policy_id = $2, esc_step = $3, esc_repeats = $4, esc_wait_until = $5,
			esc_done_at = $6, updated_at = $7 WHERE id = $1 AND status = 'firing' AND esc_done_at IS NULL
			AND esc_step = $8 AND esc_repeats = $9 AND esc_wait_until = $10`,
			in.ID, pol.ID, next.Step, next.Repeats, wait, done, store.Millis(now), in.EscStep, in.EscRepeats, waitMillis(in.EscWaitUntil))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errMoved
		}
		if in.EscStep == 0 && in.EscRepeats == 0 && in.EscWaitUntil.IsZero() {
			// The incident's first pass: webhooks hear of it whatever the policy says.
			n, err := e.enqueueWebhooks(ctx, tx, in, notify.StatusFiring)
			if err != nil {
				return err
			}
			enqueued += n
		}
		for _, t := range targets {
			escalated := t.action.Step != firstNotify || t.action.Repeat > 0
			if escalated {
				if err := addEvent(ctx, tx, in.ID, now, EventEscalated, "", map[string]any{
					"step": t.action.Step + 1, "tier": string(t.action.Tier), "user_id": t.action.UserID, "repeat": t.action.Repeat,
				}); err != nil {
					return err
				}
			}
			reached := 0
			for _, p := range t.people {
				for _, ch := range t.action.ChannelsFor(p) {
					n, err := e.enqueueStep(ctx, tx, in, now, t.action, escalated, p, ch)
					if err != nil {
						return err
					}
					enqueued += n
					reached++
				}
			}
			if reached == 0 {
				e.logger.Warn("an escalation step reached nobody", "incident", in.ID, "step", t.action.Step+1, "tier", t.action.Tier)
				if err := addEvent(ctx, tx, in.ID, now, EventNoRecipient, "", map[string]any{
					"step": t.action.Step + 1, "tier": string(t.action.Tier), "user_id": t.action.UserID,
				}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if errors.Is(err, errMoved) {
		return nil
	}
	if err != nil {
		return err
	}
	if enqueued > 0 && e.esc.Dispatcher != nil {
		e.esc.Dispatcher.Wake()
	}
	if len(actions) > 0 && e.onIncident != nil {
		e.onIncident()
	}
	return nil
}

var errMoved = errors.New("incident changed meanwhile")

func waitMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return store.Millis(t)
}

func firstNotifyStep(p oncall.Policy) int {
	for i, s := range p.Steps {
		if s.Kind == oncall.KindNotifyTier || s.Kind == oncall.KindNotifyUser {
			return i
		}
	}
	return -1
}

// policyOf returns the incident's policy: the one it started with, so that editing policies does
// not re-route incidents in flight, or the most specific one for its client and severity.
func (e *Engine) policyOf(ctx context.Context, in Incident) (oncall.Policy, error) {
	if in.PolicyID != "" {
		p, err := e.esc.OnCall.GetPolicy(ctx, in.PolicyID)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, oncall.ErrNotFound) {
			return oncall.Policy{}, err
		}
	}
	p, err := e.esc.OnCall.PolicyFor(ctx, in.ClientID, in.Severity)
	if errors.Is(err, oncall.ErrNotFound) {
		return oncall.Policy{}, nil // no policy at all: nobody is notified, the incident is still recorded
	}
	return p, err
}

// enqueueStep enqueues one notification of a step to one person over one channel, with an
// acknowledgement link of its own.
func (e *Engine) enqueueStep(ctx context.Context, tx *sql.Tx, in Incident, now time.Time, a oncall.Action, escalated bool, p oncall.Person, channel string) (int, error) {
	recipient := p.Email
	if channel == notify.ChannelSMS {
		recipient = p.Phone
	}
	if recipient == "" {
		return 0, nil
	}
	key := fmt.Sprintf("%s/f%d/s%d.r%d/%s/%s", in.ID, in.Fires, a.Step+1, a.Repeat, recipient, channel)
	var exists int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM notifications WHERE dedupe_key = $1", key).Scan(&exists); err != nil {
		return 0, err
	}
	if exists > 0 {
		return 0, nil // sent (or queued) before a restart replayed this step
	}
	tok, err := e.CreateAckToken(ctx, tx, in.ID, p.Name, p.UserID)
	if err != nil {
		return 0, err
	}
	view := e.view(ctx, in, notify.StatusFiring)
	view.AckURL = e.link("/ack/" + tok)
	view.Step, view.Tier = a.Step+1, string(a.Tier)
	view.Escalated = escalated
	var n notify.Notification
	switch channel {
	case notify.ChannelEmail:
		n, err = notify.EmailNotification(view, recipient)
	case notify.ChannelSMS:
		n, err = notify.SMSNotification(view, recipient)
	default:
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("rendering %s to %s: %w", channel, p.Name, err)
	}
	n.DedupeKey = key
	created, err := notify.Enqueue(ctx, tx, e.db.Dialect(), n)
	if err != nil || !created {
		return 0, err
	}
	// Stamped with the pass's instant, from which the next wait is counted too.
	return 1, addEvent(ctx, tx, in.ID, now, EventNotified, "", map[string]any{
		"step": a.Step + 1, "tier": string(a.Tier), "user": p.Name, "user_id": p.UserID, "channel": channel, "recipient": recipient,
	})
}

// enqueueWebhooks tells every configured webhook of an incident's change.
func (e *Engine) enqueueWebhooks(ctx context.Context, tx *sql.Tx, in Incident, status string) (int, error) {
	n := 0
	for _, name := range e.esc.Webhooks {
		view := e.view(ctx, in, status)
		nt, err := notify.WebhookNotification(view, name)
		if err != nil {
			return n, err
		}
		nt.DedupeKey = fmt.Sprintf("%s/f%d/%s/%s/webhook", in.ID, in.Fires, status, name)
		created, err := notify.Enqueue(ctx, tx, e.db.Dialect(), nt)
		if err != nil {
			return n, err
		}
		if created {
			n++
		}
	}
	return n, nil
}

// afterCloseTx runs in the transaction that acknowledges or resolves an incident: queued step
// notifications not yet sent are cancelled (an engineer who acknowledged must not be paged by a
// mail stuck behind an SMTP outage), and, on resolution, everyone already told by email hears it
// is over, as do the webhooks.
func (e *Engine) afterCloseTx(ctx context.Context, tx *sql.Tx, id, status string) error {
	if e.esc == nil {
		return nil
	}
	if _, err := notify.Cancel(ctx, tx, id, status); err != nil {
		return err
	}
	in, err := scanIncident(tx.QueryRowContext(ctx, "SELECT "+incidentCols+" FROM incidents WHERE id = $1", id))
	if err != nil {
		return err
	}
	if _, err := e.enqueueWebhooks(ctx, tx, in, status); err != nil {
		return err
	}
	if status == notify.StatusResolved {
		recs, err := notify.ListByIncident(ctx, tx, id)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, r := range recs {
			if r.Channel != notify.ChannelEmail || r.Status != "sent" || seen[r.Recipient] {
				continue
			}
			seen[r.Recipient] = true
			view := e.view(ctx, in, notify.StatusResolved)
			nt, err := notify.EmailNotification(view, r.Recipient)
			if err != nil {
				return err
			}
			nt.DedupeKey = fmt.Sprintf("%s/f%d/resolved/%s/email", in.ID, in.Fires, r.Recipient)
			if _, err := notify.Enqueue(ctx, tx, e.db.Dialect(), nt); err != nil {
				return err
			}
		}
	}
	return nil // the caller wakes the dispatcher once this has committed (changed)
}

// view is the incident as notifications show it.
func (e *Engine) view(_ context.Context, in Incident, status string) notify.Incident {
	l := in.Labels
	title := in.Alertname
	if spec, ok := e.Spec(in.Alertname); ok && spec.Per != "" && l[spec.Per] != "" {
		title += " " + l[spec.Per]
	}
	v := notify.Incident{
		ID: in.ID, Title: title, Client: l["client"], Site: l["site"], Host: l["host"], Alert: in.Alertname,
		Severity: in.Severity, Status: status, Summary: in.Annotations["summary"], Description: in.Annotations["description"],
		Value: in.Value, Watermark: e.watermarkText(in), StartsAt: in.StartedAt, EndsAt: in.ResolvedAt,
		Labels: l, Annotations: in.Annotations, RunbookURL: in.Annotations["runbook_url"],
		IncidentURL: e.link("/incidents/" + in.ID), ActionPlan: e.ActionPlan(in.Alertname), AckedBy: in.AckedBy,
	}
	if v.RunbookURL == "" {
		v.RunbookURL = e.link("/runbooks/" + url.PathEscape(in.Alertname))
	}
	return v
}

// watermarkText is the effective watermark the incident's alert compared against, with its unit.
func (e *Engine) watermarkText(in Incident) string {
	spec, ok := e.Spec(in.Alertname)
	if !ok {
		return ""
	}
	b := labels.NewBuilder(labels.EmptyLabels())
	b.Set("alert", in.Alertname)
	for _, n := range []string{"client", "site", "host"} {
		b.Set(n, in.Labels[n])
	}
	b.Set("scope", ScopeHost)
	v, found := e.wm.Value(b.Labels())
	if spec.Per != "" && in.Labels[spec.Per] != "" {
		b.Set("scope", spec.Per)
		b.Set(spec.Per, in.Labels[spec.Per])
		if uv, ok := e.wm.Value(b.Labels()); ok {
			v, found = uv, true
		}
	}
	if !found {
		v = spec.Default
	}
	return formatValue(v) + unitSuffix(spec.Unit)
}

func unitSuffix(u string) string {
	switch u {
	case "", "count":
		return ""
	case "%":
		return "%"
	}
	return " " + u
}

// link makes an absolute URL on the hub.
func (e *Engine) link(path string) string {
	return strings.TrimSuffix(e.opts.ExternalURL.String(), "/") + path
}
