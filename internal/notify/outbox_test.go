package notify

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

func mustEmail(t testing.TB, inc Incident, to string) Notification {
	t.Helper()
	n, err := EmailNotification(inc, to)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEnqueueOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := mustEmail(t, sampleIncident(), "l1@acme.example")
		for i, want := range []bool{true, false} {
			created, err := Enqueue(ctx, db, db.Dialect(), n)
			if err != nil || created != want {
				t.Fatalf("enqueue %d: created %v, err %v; want %v", i+1, created, err, want)
			}
		}
		// Inside the caller's transaction, as the escalation enqueues: a third try is a no-op there
		// too, and a rolled-back transaction leaves nothing.
		other := mustEmail(t, sampleIncident(), "l2@acme.example")
		errRollback := errors.New("rollback")
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			if created, err := Enqueue(ctx, tx, db.Dialect(), n); err != nil || created {
				t.Errorf("enqueue in tx of an existing key: %v, %v", created, err)
			}
			if created, err := Enqueue(ctx, tx, db.Dialect(), other); err != nil || !created {
				t.Errorf("enqueue in tx: %v, %v", created, err)
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
		recs, err := ListByIncident(ctx, db, n.IncidentID)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].DedupeKey != n.DedupeKey || recs[0].Status != OutboxPending || recs[0].Attempts != 0 {
			t.Fatalf("rows %+v, want the one pending notification", recs)
		}
		if recs[0].Message == nil || recs[0].Message.Subject != n.Message.Subject || recs[0].Message.HTML == "" {
			t.Errorf("stored message does not round-trip: %+v", recs[0].Message)
		}
	})
}

func TestEnqueueRefusesIncomplete(t *testing.T) {
	db := storetest.SQLite(t)
	for _, n := range []Notification{
		{},
		{DedupeKey: "k", IncidentID: "i", Channel: "email"},
		{DedupeKey: "k", IncidentID: "i", Recipient: "a@b.c"},
	} {
		if _, err := Enqueue(context.Background(), db, db.Dialect(), n); err == nil {
			t.Errorf("Enqueue(%+v) succeeded", n)
		}
	}
}

func TestListLogAndCancel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		incA, incB := sampleIncident(), sampleIncident()
		incB.ID = "incident-b"
		var keys []string
		for i := range 5 {
			inc := incA
			if i%2 == 1 {
				inc = incB
			}
			inc.Step = i + 1
			n := mustEmail(t, inc, fmt.Sprintf("u%d@acme.example", i))
			if _, err := Enqueue(ctx, db, db.Dialect(), n); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, n.DedupeKey)
		}
		sms, err := SMSNotification(incA, "+447700900123")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Enqueue(ctx, db, db.Dialect(), sms); err != nil {
			t.Fatal(err)
		}

		page1, more, err := ListLog(ctx, db, LogFilter{Channel: ChannelEmail, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		page2, more2, err := ListLog(ctx, db, LogFilter{Channel: ChannelEmail, Limit: 3, Offset: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(page1) != 3 || !more || len(page2) != 2 || more2 {
			t.Fatalf("pages of %d (more %v) and %d (more %v), want 3 (more) and 2", len(page1), more, len(page2), more2)
		}
		var got []string
		for _, r := range append(page1, page2...) {
			got = append(got, r.DedupeKey)
		}
		// Newest first: the keys in reverse order of enqueueing (ids are time-ordered).
		for i := range keys {
			if got[i] != keys[len(keys)-1-i] {
				t.Fatalf("log order %v, want newest first of %v", got, keys)
			}
		}
		byB, _, err := ListLog(ctx, db, LogFilter{IncidentID: "incident-b"})
		if err != nil || len(byB) != 2 {
			t.Fatalf("incident filter: %d rows, %v", len(byB), err)
		}

		n, err := Cancel(ctx, db, incA.ID, "acknowledged by jane")
		if err != nil || n != 4 {
			t.Fatalf("Cancel: %d, %v; want 4 (3 emails and the SMS)", n, err)
		}
		recs, err := ListByIncident(ctx, db, incA.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Status != OutboxCancelled || !strings.Contains(r.LastError, "acknowledged by jane") {
				t.Errorf("after Cancel: %s %s %q", r.DedupeKey, r.Status, r.LastError)
			}
		}
		if left, _, _ := ListLog(ctx, db, LogFilter{Status: OutboxPending}); len(left) != 2 {
			t.Errorf("%d pending left, want incident b's 2", len(left))
		}
	})
}
