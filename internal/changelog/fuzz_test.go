package changelog_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/changes"
)

// FuzzValidateBatch: whatever body an agent sends, decoding and Validate either refuse it with
// named fields or pass a batch whose every event the store can hold and the pages can show.
func FuzzValidateBatch(f *testing.F) {
	for _, s := range []string{
		`{"journal":"3f9a","events":[{"seq":1,"time":"2026-03-10T12:00:00Z","kind":"packages","object":"nginx:amd64","action":"changed","before":{"version":"1"},"after":{"version":"2"}}]}`,
		`{"journal":"j","events":[{"seq":2,"time":"2026-03-10T12:00:00Z","kind":"files","object":"/usr/bin/ls","action":"changed","tampered":true,"files":["/a","/b"]}]}`,
		`{"journal":"j","events":[{"seq":0,"time":"0001-01-01T00:00:00Z","kind":"weather","object":"","action":"upgraded"}]}`,
		`{"journal":"../x","events":[]}`, `{"journal":"j","events":[{"seq":1,"diff":"\u0000"}]}`, `{}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req struct {
			Journal string          `json:"journal"`
			Events  []changes.Event `json:"events"`
		}
		if json.Unmarshal(body, &req) != nil {
			return
		}
		fe := changelog.Validate(req.Journal, req.Events, now)
		if len(fe) > 0 {
			if len(fe) > 20 {
				t.Errorf("%d field errors; at most 20 are reported", len(fe))
			}
			for _, e := range fe {
				if e.Field == "" || e.Msg == "" || !utf8.ValidString(e.Msg) {
					t.Errorf("field error %+v", e)
				}
			}
			return
		}
		if req.Journal == "" || len(req.Journal) > changelog.MaxJournalLen || len(req.Events) > changelog.MaxBatch {
			t.Errorf("journal %q with %d events passed", req.Journal, len(req.Events))
		}
		for _, e := range req.Events {
			if e.Seq == 0 || e.Object == "" || !slices.Contains(changelog.Kinds(), e.Kind) || !slices.Contains(changelog.Actions, e.Action) ||
				e.Time.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) || e.Time.After(now.Add(24*time.Hour)) || !utf8.ValidString(e.Object) {
				t.Errorf("event %+v passed", e)
			}
		}
	})
}
