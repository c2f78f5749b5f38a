package notify

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// BenchmarkEnqueueToSMTPAccept measures what the outbox adds to breach-to-notification latency:
// from the start of the transaction that enqueues an email (as the escalation does) to the SMTP
// server in the test process accepting the message, over STARTTLS with AUTH PLAIN, with the
// default dispatcher options (so the fallback poll is 2 s and only Wake makes it fast).
// Reports the median and p99 in milliseconds.
func BenchmarkEnqueueToSMTPAccept(b *testing.B) {
	storetest.EachB(b, func(b *testing.B, db *store.DB) {
		srv := newSMTPServer(b, smtpOptions{mode: "starttls", users: map[string]string{"sage": "pw"}})
		pw := b.TempDir() + "/pw"
		if err := os.WriteFile(pw, []byte("pw"), 0o600); err != nil {
			b.Fatal(err)
		}
		sender, err := NewEmailSender(SMTPConfig{Host: srv.host(), Port: srv.port(), From: "sage@example.com",
			CAFile: srv.CAFile, Username: "sage", PasswordFile: pw})
		if err != nil {
			b.Fatal(err)
		}
		d := NewDispatcher(db, map[string]Sender{ChannelEmail: sender}, Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = d.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()

		inc := sampleIncident()
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			inc.ID = fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
			n, err := EmailNotification(inc, "l1@acme.example")
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if err := db.Tx(ctx, func(tx *sql.Tx) error {
				_, err := Enqueue(ctx, tx, db.Dialect(), n)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			d.Wake()
			select {
			case <-srv.delivery:
			case <-time.After(30 * time.Second):
				b.Fatal("mail not delivered")
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		slices.Sort(lat)
		ms := func(q float64) float64 {
			return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
		}
		b.ReportMetric(ms(0.5), "p50-ms")
		b.ReportMetric(ms(0.9), "p90-ms")
		b.ReportMetric(ms(0.99), "p99-ms")
	})
}
