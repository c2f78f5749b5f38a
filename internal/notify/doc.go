// Package notify tells people about incidents: it renders an incident into an email (text and
// HTML), an SMS and an Alertmanager-compatible webhook payload, keeps every notification in an
// outbox table of the state store, and delivers the outbox through one Sender per channel (SMTP,
// an SMS provider, webhooks) with retries and backoff.
//
// The outbox is what makes "each (incident, escalation step, recipient) is notified at most once,
// also across restarts" hold: the caller enqueues a notification in the same transaction that
// advances an escalation step, under a dedupe key that is unique in the table, so enqueueing it
// again (after a crash, or from a second hub) is a no-op. The Dispatcher then claims due rows,
// sends them and records the result, which the incident timeline and the send log read back.
//
// Use from the escalation:
//
//	n, err := notify.EmailNotification(inc, "l1@example.com") // rendered now, stored as is
//	err = db.Tx(ctx, func(tx *sql.Tx) error {
//		// ... advance the step ...
//		_, err := notify.Enqueue(ctx, tx, db.Dialect(), n) // a no-op if this key was enqueued before
//		return err
//	})
//	dispatcher.Wake() // after the commit: delivery starts now, not at the next poll
//
// Delivery is at least once, not exactly once. A row is claimed (status sending) for a lease of
// the send timeout plus 30 s. If the hub dies while sending, the row is retried at the next start
// on SQLite (one hub per database, so every claimed row at start was this hub's) and when the
// lease ends on PostgreSQL (another hub may be sending it right now). If it dies after a provider
// accepted a message and before the row is marked sent (a window of one database write,
// milliseconds), the message is sent again. Email carries a Message-ID derived from the dedupe key
// and the enqueue time as its Date, so the resend is byte for byte the same message; webhooks and
// the HTTP gateway carry the key in an Idempotency-Key header; Twilio's message creation takes no
// such key, so a duplicate SMS is possible in that window.
package notify
