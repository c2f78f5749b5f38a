package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/serversage/sage/internal/store"
)

// Options tune a Dispatcher; zero fields take the defaults.
type Options struct {
	// MinBackoff is the wait after the first failed attempt, doubled after each further one up to
	// MaxBackoff, with ±20% jitter so that a queue that built up during an outage does not retry
	// in lockstep. Defaults 5s and 5m.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxAge is how long a notification is retried before it is marked failed; default 24h.
	MaxAge time.Duration
	// Poll is how often the outbox is read when nothing woke the dispatcher: only a fallback,
	// since Wake starts delivery at once and retries are timed to their due time. Default 2s.
	Poll time.Duration
	// SendTimeout bounds one send; default 30s.
	SendTimeout time.Duration
	// Lease is how long a claimed row stays claimed; when it runs out without the row being
	// marked (its dispatcher died), another dispatcher takes it over. Default SendTimeout + 30s;
	// it must exceed SendTimeout.
	Lease time.Duration
	// Workers is how many sends run at once, so that a slow channel does not hold up the others;
	// default 4.
	Workers int
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MinBackoff, 5*time.Second)
	def(&o.MaxBackoff, 5*time.Minute)
	def(&o.MaxAge, 24*time.Hour)
	def(&o.Poll, 2*time.Second)
	def(&o.SendTimeout, 30*time.Second)
	if o.Lease <= o.SendTimeout {
		o.Lease = o.SendTimeout + 30*time.Second
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.Workers <= 0 {
		o.Workers = 4
	}
	return o
}

// Dispatcher delivers the outbox: it claims due notifications, sends each through the Sender of
// its channel, and records the outcome. Several dispatchers may share one PostgreSQL database
// (several hubs): a row is claimed by one of them (FOR UPDATE SKIP LOCKED), and taken over by
// another only when its claim's lease has run out. On SQLite, which one hub uses, the rows a
// crash left claimed are retried as soon as the dispatcher starts.
//
// A Dispatcher is a prometheus.Collector of sage_notifications_total{channel,result},
// sage_notification_send_duration_seconds{channel} and sage_notification_queue_depth{channel}.
type Dispatcher struct {
	db      *store.DB
	senders map[string]Sender
	opts    Options
	log     *slog.Logger
	wake    chan struct{}

	results  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	depth    *prometheus.Desc

	mu      sync.Mutex
	dbError bool // the last claim failed: log the recovery once
}

// NewDispatcher returns a dispatcher of db's outbox over senders, keyed by channel.
func NewDispatcher(db *store.DB, senders map[string]Sender, opts Options, logger *slog.Logger) *Dispatcher {
	if logger == nil {
		logger = slog.Default()
	}
	d := &Dispatcher{
		db:      db,
		senders: maps.Clone(senders),
		opts:    opts.withDefaults(),
		log:     logger.With("component", "notify"),
		wake:    make(chan struct{}, 1),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sage_notifications_total",
			Help: "Notification send attempts by channel and result: sent, retry (failed, will be retried), failed (given up).",
		}, []string{"channel", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sage_notification_send_duration_seconds",
			Help:    "Time taken by one notification send attempt, whatever its result.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"channel"}),
		depth: prometheus.NewDesc("sage_notification_queue_depth",
			"Notifications waiting to be sent (pending or being sent), by channel.", []string{"channel"}, nil),
	}
	for ch := range d.senders {
		for _, r := range []string{"sent", "retry", "failed"} {
			d.results.WithLabelValues(ch, r)
		}
		d.duration.WithLabelValues(ch)
	}
	return d
}

// Wake tells the dispatcher that notifications were enqueued (call it after the transaction
// commits), so that delivery starts now rather than at the next poll. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// ListByIncident is ListByIncident on the dispatcher's database.
func (d *Dispatcher) ListByIncident(ctx context.Context, incidentID string) ([]Record, error) {
	return ListByIncident(ctx, d.db, incidentID)
}

// claimed is an outbox row this dispatcher has claimed.
type claimed struct {
	Delivery
}

// Run delivers the outbox until ctx is done, then waits for the sends in progress to end (they
// are cancelled with ctx, and their rows put back as due) and returns nil. Database errors are
// logged and retried, never returned: notifications wait in the outbox until the store is back.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.db.Dialect() == store.SQLite {
		d.recoverClaims(ctx)
	}
	done := make(chan struct{}, d.opts.Workers)
	inflight := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	const minWait = 5 * time.Millisecond
	for {
		for drained := false; !drained; {
			select {
			case <-done:
				inflight--
			default:
				drained = true
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := d.opts.Poll
		if free := d.opts.Workers - inflight; free > 0 {
			batch, err := d.claim(ctx, free)
			if d.noteDBError(ctx, "claiming due notifications", err) {
				// wait the poll interval and try again
			} else {
				for _, c := range batch {
					inflight++
					wg.Add(1)
					go func() {
						defer wg.Done()
						d.deliver(ctx, c)
						done <- struct{}{}
					}()
				}
				if len(batch) == free {
					continue // there may be more due; claim again when a worker is free
				}
				next, ok, err := d.nextDue(ctx)
				if !d.noteDBError(ctx, "reading the next due notification", err) && ok {
					wait = min(max(time.Until(next), minWait), d.opts.Poll)
				}
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-done:
			inflight--
		case <-timer.C:
		}
		timer.Stop()
	}
}

// noteDBError logs the first of a run of database errors and the recovery after it, and reports
// whether err is an error.
func (d *Dispatcher) noteDBError(ctx context.Context, what string, err error) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		if d.dbError {
			d.log.Info("notification outbox readable again")
			d.dbError = false
		}
		return false
	}
	if ctx.Err() != nil {
		return true
	}
	if !d.dbError {
		d.log.Error("notification outbox unavailable; retrying", "while", what, "err", err)
		d.dbError = true
	}
	return true
}

// recoverClaims puts back the rows a previous run left claimed. Only on SQLite, where a database
// belongs to one hub, so every claimed row at start was this hub's and its send died with it.
func (d *Dispatcher) recoverClaims(ctx context.Context) {
	res, err := d.db.ExecContext(ctx, `UPDATE notifications SET status = 'pending', next_attempt_at = $1,
		last_error = 'interrupted: the hub stopped while sending' WHERE status = 'sending'`, store.Millis(time.Now()))
	if err != nil {
		d.log.Error("cannot put back notifications left claimed by the previous run; they are retried when their lease ends", "err", err)
		return
	}
	if n, _ := res.RowsAffected(); n > 0 {
		d.log.Warn("retrying notifications whose send was interrupted by the previous stop; a message the server had already accepted is sent again (same Message-ID for email)", "count", n)
	}
}

// claim takes up to n due rows: pending ones whose time has come, and claimed ones whose lease
// ran out. One statement, so that the claim is atomic; on PostgreSQL SKIP LOCKED lets dispatchers
// of other hubs claim other rows at the same time instead of waiting, and SQLite serialises writers.
func (d *Dispatcher) claim(ctx context.Context, n int) ([]claimed, error) {
	now := time.Now()
	lock := ""
	if d.db.Dialect() == store.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	rows, err := d.db.QueryContext(ctx, `UPDATE notifications
		SET status = 'sending', attempts = attempts + 1, next_attempt_at = $1, last_attempt_at = $2
		WHERE id IN (SELECT id FROM notifications
			WHERE status IN ('pending', 'sending') AND next_attempt_at <= $2
			ORDER BY next_attempt_at LIMIT $3`+lock+`)
		RETURNING id, dedupe_key, incident_id, step, channel, recipient, payload, attempts, created_at`,
		store.Millis(now.Add(d.opts.Lease)), store.Millis(now), n)
	return store.ScanAll(rows, err, func(r store.Row) (claimed, error) {
		var c claimed
		var payload string
		var created int64
		if err := r.Scan(&c.ID, &c.DedupeKey, &c.IncidentID, &c.Step, &c.Channel, &c.Recipient, &payload,
			&c.Attempt, &created); err != nil {
			return claimed{}, err
		}
		c.CreatedAt = store.FromMillis(created)
		if err := json.Unmarshal([]byte(payload), &c.Message); err != nil {
			// Kept and sent as far as it goes: the sender refuses what it cannot send.
			d.log.Error("notification payload unreadable", "key", c.DedupeKey, "err", err)
		}
		return c, nil
	})
}

// nextDue is when the earliest pending (or claimed) row is due.
func (d *Dispatcher) nextDue(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := d.db.QueryRowContext(ctx, `SELECT MIN(next_attempt_at) FROM notifications
		WHERE status IN ('pending', 'sending')`).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, false, err
	}
	return store.FromMillis(next.Int64), true, nil
}

// backoff is the wait after the attempt-th failed attempt.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	b := d.opts.MinBackoff
	for i := 1; i < attempt && b < d.opts.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.opts.MaxBackoff)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(b) * jitter)
}

// deliver sends one claimed row and records the outcome.
func (d *Dispatcher) deliver(ctx context.Context, c claimed) {
	start := time.Now()
	sender, ok := d.senders[c.Channel]
	var (
		ref string
		err error
	)
	if !ok {
		err = Permanent(fmt.Errorf("no %s channel is configured", c.Channel))
	} else {
		sctx, cancel := context.WithTimeout(ctx, d.opts.SendTimeout)
		ref, err = sender.Send(sctx, c.Delivery)
		cancel()
		d.duration.WithLabelValues(c.Channel).Observe(time.Since(start).Seconds())
	}
	elapsed := time.Since(start)
	// The outcome is recorded even while shutting down: that is what keeps the message from
	// being sent again. Counters go first, so that whoever sees the row's outcome sees it counted.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	now := time.Now()
	attrs := []any{"channel", c.Channel, "recipient", c.Recipient, "incident", c.IncidentID, "step", c.Step,
		"attempt", c.Attempt, "key", c.DedupeKey, "duration", elapsed.Round(time.Millisecond)}
	switch {
	case err == nil:
		d.results.WithLabelValues(c.Channel, "sent").Inc()
		d.mark(mctx, c, `status = 'sent', sent_at = $3, provider_ref = $4, last_error = ''`, store.Millis(now), truncateRunes(oneLine(ref), 200))
		d.log.Info("notification sent", append(attrs, "ref", ref)...)
	case ctx.Err() != nil:
		d.mark(mctx, c, `status = 'pending', next_attempt_at = $3, last_error = $4`, store.Millis(now), errText("interrupted by shutdown", err))
		d.log.Info("notification send interrupted by shutdown; it is retried at the next start", append(attrs, "err", err)...)
	case IsPermanent(err):
		d.results.WithLabelValues(c.Channel, "failed").Inc()
		d.mark(mctx, c, `status = 'failed', last_error = $3`, errText("", err))
		d.log.Error("notification failed", append(attrs, "err", err)...)
	case now.Sub(c.CreatedAt) >= d.opts.MaxAge:
		d.results.WithLabelValues(c.Channel, "failed").Inc()
		d.mark(mctx, c, `status = 'failed', last_error = $3`,
			errText(fmt.Sprintf("gave up after %d attempts in %s", c.Attempt, now.Sub(c.CreatedAt).Round(time.Second)), err))
		d.log.Error("notification failed: retried for too long", append(attrs, "err", err, "max_age", d.opts.MaxAge)...)
	default:
		next := now.Add(max(d.backoff(c.Attempt), retryAfter(err)))
		d.results.WithLabelValues(c.Channel, "retry").Inc()
		d.mark(mctx, c, `status = 'pending', next_attempt_at = $3, last_error = $4`, store.Millis(next), errText("", err))
		d.log.Warn("notification send failed; will retry", append(attrs, "err", err, "next_attempt", next.Format(time.RFC3339))...)
	}
}

func errText(prefix string, err error) string {
	s := err.Error()
	if prefix != "" {
		s = prefix + ": " + s
	}
	return truncateRunes(oneLine(s), 1000)
}

// mark records the outcome of a claimed row, provided the claim is still this dispatcher's (the
// row is still being sent, at this attempt). A database error is retried a few times: a row left
// claimed is sent again once its lease ends.
func (d *Dispatcher) mark(ctx context.Context, c claimed, set string, args ...any) {
	q := `UPDATE notifications SET ` + set + ` WHERE id = $1 AND status = 'sending' AND attempts = $2`
	args = append([]any{c.ID, c.Attempt}, args...)
	var err error
	for try := 0; try < 5; try++ {
		var res sql.Result
		res, err = d.db.ExecContext(ctx, q, args...)
		if err == nil {
			if n, _ := res.RowsAffected(); n == 0 {
				d.log.Warn("notification was taken over by another dispatcher before its outcome was recorded (its lease ran out); it may be sent twice",
					"key", c.DedupeKey, "attempt", c.Attempt)
			}
			return
		}
		if ctx.Err() != nil || !store.IsUnavailable(err) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(try+1) * 200 * time.Millisecond):
		}
	}
	d.log.Error("cannot record a notification's outcome; it is retried when its lease ends", "key", c.DedupeKey, "err", err)
}

// Describe implements prometheus.Collector.
func (d *Dispatcher) Describe(ch chan<- *prometheus.Desc) {
	d.results.Describe(ch)
	d.duration.Describe(ch)
	ch <- d.depth
}

// Collect implements prometheus.Collector. The queue depth is counted at scrape time: one indexed
// query over the few pending rows.
func (d *Dispatcher) Collect(ch chan<- prometheus.Metric) {
	d.results.Collect(ch)
	d.duration.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := d.queueDepth(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(d.depth, err)
		return
	}
	for ch0 := range d.senders {
		if _, ok := counts[ch0]; !ok {
			counts[ch0] = 0
		}
	}
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		ch <- prometheus.MustNewConstMetric(d.depth, prometheus.GaugeValue, float64(counts[name]), name)
	}
}

func (d *Dispatcher) queueDepth(ctx context.Context) (map[string]int64, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT channel, COUNT(*) FROM notifications
		WHERE status IN ('pending', 'sending') GROUP BY channel`)
	if err != nil {
		return nil, fmt.Errorf("notify: counting the queue: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var ch string
		var n int64
		if err := rows.Scan(&ch, &n); err != nil {
			return nil, err
		}
		out[ch] = n
	}
	if err := rows.Err(); err != nil {
		return nil, errors.Join(errors.New("notify: counting the queue"), err)
	}
	return out, nil
}
