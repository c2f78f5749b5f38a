package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// fastOptions retry quickly, so that tests wait milliseconds, not minutes.
var fastOptions = Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	Poll: 500 * time.Millisecond, SendTimeout: 2 * time.Second, Lease: 3 * time.Second}

// mailSetup is a real SMTP server with STARTTLS and AUTH PLAIN and an email sender for it.
func mailSetup(t *testing.T) (*smtpServer, *EmailSender) {
	t.Helper()
	srv := newSMTPServer(t, smtpOptions{mode: "starttls", users: map[string]string{"sage": "pw"}})
	return srv, emailSenderFor(t, srv)
}

func emailSenderFor(t *testing.T, srv *smtpServer) *EmailSender {
	t.Helper()
	s, err := NewEmailSender(SMTPConfig{Host: srv.host(), Port: srv.port(), From: "sage@example.com", CAFile: srv.CAFile,
		Username: "sage", PasswordFile: passwordFile(t, "pw"), Timeout: "2s"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runDispatcher runs d until the test ends.
func runDispatcher(t *testing.T, d *Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// enqueueEmails enqueues n emails about one incident, one per step.
func enqueueEmails(t *testing.T, db *store.DB, n int) []Notification {
	t.Helper()
	var out []Notification
	for i := range n {
		inc := sampleIncident()
		inc.Step = i + 1
		nt := mustEmail(t, inc, "l1@acme.example")
		if created, err := Enqueue(context.Background(), db, db.Dialect(), nt); err != nil || !created {
			t.Fatalf("Enqueue: %v, %v", created, err)
		}
		out = append(out, nt)
	}
	return out
}

func statuses(t *testing.T, db *store.DB) map[string]Record {
	t.Helper()
	recs, _, err := ListLog(context.Background(), db, LogFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Record{}
	for _, r := range recs {
		out[r.DedupeKey] = r
	}
	return out
}

func allStatus(t *testing.T, db *store.DB, want string) func() bool {
	return func() bool {
		for _, r := range statuses(t, db) {
			if r.Status != want {
				return false
			}
		}
		return true
	}
}

func TestDispatcherDelivers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		srv, sender := mailSetup(t)
		d := NewDispatcher(db, map[string]Sender{ChannelEmail: sender}, fastOptions, testLogger(t))
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(d)
		runDispatcher(t, d)
		sent := enqueueEmails(t, db, 3)
		d.Wake()
		waitFor(t, "3 mails", 20*time.Second, func() bool { return len(srv.received()) == 3 })
		waitFor(t, "rows marked sent", 10*time.Second, allStatus(t, db, OutboxSent))
		recs, err := ListByIncident(context.Background(), db, sent[0].IncidentID)
		if err != nil {
			t.Fatal(err)
		}
		ids := srv.messageIDs(t)
		for _, r := range recs {
			if r.Attempts != 1 || r.SentAt.IsZero() || r.LastAttemptAt.IsZero() || ids[r.ProviderRef] != 1 {
				t.Errorf("%s: attempts %d, sent at %v, ref %q (received %d times)", r.DedupeKey, r.Attempts, r.SentAt, r.ProviderRef, ids[r.ProviderRef])
			}
		}
		if got := testutil.ToFloat64(d.results.WithLabelValues(ChannelEmail, "sent")); got != 3 {
			t.Errorf("sage_notifications_total{result=sent} = %v, want 3", got)
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sage_notification_queue_depth Notifications waiting to be sent (pending or being sent), by channel.
# TYPE sage_notification_queue_depth gauge
sage_notification_queue_depth{channel="email"} 0
`), "sage_notification_queue_depth"); err != nil {
			t.Error(err)
		}
		if n, err := testutil.GatherAndCount(reg, "sage_notification_send_duration_seconds"); err != nil || n != 1 {
			t.Errorf("duration histogram: %d series, %v", n, err)
		}
	})
}

// TestDispatcherSMTPOutage: the mail server is down while notifications are enqueued; they are
// retried with backoff, and delivered once each when it is back on the same port.
func TestDispatcherSMTPOutage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		cert, caFile := testCert(t)
		srv := newSMTPServer(t, smtpOptions{mode: "starttls", users: map[string]string{"sage": "pw"}, cert: &cert, caFile: caFile})
		sender := emailSenderFor(t, srv)
		srv.stop()

		d := NewDispatcher(db, map[string]Sender{ChannelEmail: sender}, fastOptions, testLogger(t))
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(d)
		runDispatcher(t, d)
		const n = 5
		enqueueEmails(t, db, n)
		d.Wake()
		waitFor(t, "every notification tried at least 3 times while the server is down", 90*time.Second, func() bool {
			for _, r := range statuses(t, db) {
				if r.Attempts < 3 || r.Status != OutboxPending {
					return false
				}
			}
			return true
		})
		for _, r := range statuses(t, db) {
			if r.Status == OutboxFailed || !(strings.Contains(r.LastError, "greeting") || strings.Contains(r.LastError, "connecting")) {
				t.Fatalf("%s during the outage: %s %q", r.DedupeKey, r.Status, r.LastError)
			}
		}
		if got := testutil.ToFloat64(d.results.WithLabelValues(ChannelEmail, "retry")); got < 3*n {
			t.Errorf("retry counter %v, want at least %d", got, 3*n)
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP sage_notification_queue_depth Notifications waiting to be sent (pending or being sent), by channel.
# TYPE sage_notification_queue_depth gauge
sage_notification_queue_depth{channel="email"} %d
`, n)), "sage_notification_queue_depth"); err != nil {
			t.Error(err)
		}

		srv.restart(cert)
		waitFor(t, "the queue to drain", 90*time.Second, allStatus(t, db, OutboxSent))
		ids := srv.messageIDs(t)
		if len(ids) != n {
			t.Errorf("%d distinct Message-IDs, want %d", len(ids), n)
		}
		for id, c := range ids {
			if c != 1 {
				t.Errorf("Message-ID %s received %d times", id, c)
			}
		}
	})
}

// TestDispatcherCrash: a dispatcher claims rows and dies (its context is gone, nothing marked);
// a new one delivers them: once when the first died before sending, and again, under the same
// Message-ID, when it died after the server accepted the mail (the documented window).
func TestDispatcherCrash(t *testing.T) {
	for _, sentBeforeCrash := range []bool{false, true} {
		t.Run(fmt.Sprintf("sent_before_crash=%v", sentBeforeCrash), func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, db *store.DB) {
				srv, sender := mailSetup(t)
				opts := fastOptions
				opts.SendTimeout, opts.Lease = 500*time.Millisecond, time.Second
				senders := map[string]Sender{ChannelEmail: sender}
				enqueueEmails(t, db, 2)

				first := NewDispatcher(db, senders, opts, testLogger(t))
				ctx, cancel := context.WithCancel(context.Background())
				batch, err := first.claim(ctx, 10)
				if err != nil || len(batch) != 2 {
					t.Fatalf("claim: %d rows, %v", len(batch), err)
				}
				if sentBeforeCrash {
					for _, c := range batch {
						if _, err := sender.Send(ctx, c.Delivery); err != nil {
							t.Fatal(err)
						}
					}
				}
				cancel() // the crash: nothing is marked
				for _, r := range statuses(t, db) {
					if r.Status != OutboxSending {
						t.Fatalf("after the crash %s is %s, want sending", r.DedupeKey, r.Status)
					}
				}

				second := NewDispatcher(db, senders, opts, testLogger(t))
				runDispatcher(t, second)
				waitFor(t, "redelivery", 20*time.Second, allStatus(t, db, OutboxSent))
				ids := srv.messageIDs(t)
				want := 1
				if sentBeforeCrash {
					want = 2
				}
				if len(ids) != 2 {
					t.Errorf("%d distinct Message-IDs, want 2", len(ids))
				}
				for id, c := range ids {
					if c != want {
						t.Errorf("Message-ID %s received %d times, want %d", id, c, want)
					}
				}
				for _, r := range statuses(t, db) {
					if r.Attempts != 2 {
						t.Errorf("%s: %d attempts, want 2 (the crashed one and the redelivery)", r.DedupeKey, r.Attempts)
					}
				}
			})
		})
	}
}

// TestDispatchersConcurrentPostgres: two hubs' dispatchers on one PostgreSQL database deliver
// every notification exactly once between them.
func TestDispatchersConcurrentPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	var dbs []*store.DB
	for range 2 {
		db, err := store.Open(context.Background(), dsn, storetest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	srv, sender := mailSetup(t)
	const n = 60
	enqueueEmails(t, dbs[0], n)
	opts := fastOptions
	opts.Workers = 6
	var ds []*Dispatcher
	for _, db := range dbs {
		d := NewDispatcher(db, map[string]Sender{ChannelEmail: sender}, opts, testLogger(t))
		runDispatcher(t, d)
		d.Wake()
		ds = append(ds, d)
	}
	waitFor(t, "all delivered", 60*time.Second, allStatus(t, dbs[0], OutboxSent))
	ids := srv.messageIDs(t)
	if len(ids) != n {
		t.Errorf("%d distinct Message-IDs, want %d", len(ids), n)
	}
	for id, c := range ids {
		if c != 1 {
			t.Errorf("Message-ID %s received %d times", id, c)
		}
	}
	total := 0.0
	for i, d := range ds {
		got := testutil.ToFloat64(d.results.WithLabelValues(ChannelEmail, "sent"))
		t.Logf("dispatcher %d sent %v", i, got)
		total += got
	}
	if total != n {
		t.Errorf("dispatchers counted %v sends, want %d", total, n)
	}
}

func TestDispatcherOutcomes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		// Twilio answers 400 for one number (permanent), 503 twice then 201 for another (retried).
		var mu sync.Mutex
		calls := map[string]int{}
		fake := &fakeTwilio{}
		srv := httptest.NewServer(fake)
		t.Cleanup(srv.Close)
		fake.fail = func(int) (int, int) { return 0, 0 }
		tw, err := NewTwilio(TwilioConfig{AccountSID: testAccountSID, AuthTokenFile: secretFile(t, "tok", testAuthToken),
			From: "+15005550006", BaseURL: srv.URL}, nil)
		if err != nil {
			t.Fatal(err)
		}
		routed := senderFunc(func(ctx context.Context, d Delivery) (string, error) {
			mu.Lock()
			calls[d.Recipient]++
			c := calls[d.Recipient]
			mu.Unlock()
			switch {
			case d.Recipient == "+447700900001":
				fake.fail = nil
				return "", Permanent(errors.New("twilio error 21211 (HTTP 400): invalid To"))
			case d.Recipient == "+447700900002" && c <= 2:
				return "", errors.New("HTTP 503")
			}
			return SMSSender{Provider: tw}.Send(ctx, d)
		})
		d := NewDispatcher(db, map[string]Sender{ChannelSMS: routed}, fastOptions, testLogger(t))
		runDispatcher(t, d)
		inc := sampleIncident()
		for _, num := range []string{"+447700900001", "+447700900002"} {
			n, err := SMSNotification(inc, num)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Enqueue(context.Background(), db, db.Dialect(), n); err != nil {
				t.Fatal(err)
			}
		}
		// An email with no email channel configured fails at once.
		if _, err := Enqueue(context.Background(), db, db.Dialect(), mustEmail(t, inc, "l1@acme.example")); err != nil {
			t.Fatal(err)
		}
		d.Wake()
		waitFor(t, "outcomes", 20*time.Second, func() bool {
			for _, r := range statuses(t, db) {
				if r.Status == OutboxPending || r.Status == OutboxSending {
					return false
				}
			}
			return true
		})
		for _, r := range statuses(t, db) {
			switch r.Recipient {
			case "+447700900001":
				if r.Status != OutboxFailed || r.Attempts != 1 || !strings.Contains(r.LastError, "21211") {
					t.Errorf("permanent error: %s after %d attempts, %q; want failed after 1", r.Status, r.Attempts, r.LastError)
				}
			case "+447700900002":
				if r.Status != OutboxSent || r.Attempts != 3 || !strings.HasPrefix(r.ProviderRef, "SM") {
					t.Errorf("retried: %s after %d attempts, ref %q; want sent after 3", r.Status, r.Attempts, r.ProviderRef)
				}
			case "l1@acme.example":
				if r.Status != OutboxFailed || !strings.Contains(r.LastError, "no email channel") {
					t.Errorf("unconfigured channel: %s %q", r.Status, r.LastError)
				}
			}
		}
		if got := len(fake.sent()); got != 1 {
			t.Errorf("twilio got %d messages, want 1", got)
		}
	})
}

type senderFunc func(ctx context.Context, d Delivery) (string, error)

func (f senderFunc) Send(ctx context.Context, d Delivery) (string, error) { return f(ctx, d) }

func TestDispatcherMaxAge(t *testing.T) {
	db := storetest.SQLite(t)
	failing := senderFunc(func(context.Context, Delivery) (string, error) { return "", errors.New("connection refused") })
	opts := fastOptions
	opts.MaxAge = time.Millisecond
	d := NewDispatcher(db, map[string]Sender{ChannelEmail: failing}, opts, testLogger(t))
	runDispatcher(t, d)
	enqueueEmails(t, db, 1)
	d.Wake()
	waitFor(t, "given up", 10*time.Second, allStatus(t, db, OutboxFailed))
	for _, r := range statuses(t, db) {
		if !strings.Contains(r.LastError, "gave up after 1 attempts") {
			t.Errorf("last error %q", r.LastError)
		}
	}
}

// TestDispatcherShutdown: stopping the dispatcher mid-send puts the row back as due, so the next
// start sends it; nothing is left claimed.
func TestDispatcherShutdown(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		started := make(chan struct{}, 1)
		blocking := senderFunc(func(ctx context.Context, _ Delivery) (string, error) {
			started <- struct{}{}
			<-ctx.Done()
			return "", ctx.Err()
		})
		d := NewDispatcher(db, map[string]Sender{ChannelEmail: blocking}, fastOptions, testLogger(t))
		stop := runDispatcher(t, d)
		enqueueEmails(t, db, 1)
		d.Wake()
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("send did not start")
		}
		stop()
		for _, r := range statuses(t, db) {
			if r.Status != OutboxPending || r.Attempts != 1 || !strings.Contains(r.LastError, "shutdown") {
				t.Errorf("after shutdown: %s, %d attempts, %q; want pending", r.Status, r.Attempts, r.LastError)
			}
		}
	})
}

// TestWakeIsImmediate: with the fallback poll an hour away, a woken dispatcher still delivers,
// so delivery does not depend on polling.
func TestWakeIsImmediate(t *testing.T) {
	db := storetest.SQLite(t)
	srv, sender := mailSetup(t)
	opts := fastOptions
	opts.Poll = time.Hour
	d := NewDispatcher(db, map[string]Sender{ChannelEmail: sender}, opts, testLogger(t))
	runDispatcher(t, d)
	// Let Run reach its wait first, so the wake below is what ends it.
	time.Sleep(50 * time.Millisecond)
	enqueueEmails(t, db, 1)
	d.Wake()
	select {
	case <-srv.delivery:
	case <-time.After(20 * time.Second):
		t.Fatal("a woken dispatcher did not deliver (is it waiting for the hourly poll?)")
	}
}
