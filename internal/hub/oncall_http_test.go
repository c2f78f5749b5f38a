package hub

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// The on-call API through the hub's handler: each request's status and body, in order, since
// later requests use what earlier ones created ({user}, {rota}, {policy}, {default} in paths
// and bodies are replaced by those ids).
func TestOnCallAPI(t *testing.T) {
	th := startHub(t, testConfig(t, storetest.SQLiteDSN(t), true))
	ctx := context.Background()
	// A user row without a usable password: bcrypt at the production cost takes seconds under -race,
	// and carol never logs in here.
	userID := store.NewID()
	if _, err := th.db.ExecContext(ctx, `INSERT INTO users (id, username, username_fold, display_name, role, password_hash, created_at, updated_at)
		VALUES ($1, 'carol', 'carol', '', 'engineer', 'x', $2, $2)`, userID, store.Millis(time.Now())); err != nil {
		t.Fatal(err)
	}
	def, err := th.OnCall().ListPolicies(ctx)
	if err != nil || len(def) != 1 || def[0].Name != oncall.DefaultPolicyName {
		t.Fatalf("policies of a fresh hub: %+v %v", def, err)
	}
	ids := map[string]string{"{user}": userID, "{default}": def[0].ID}
	expand := func(s string) string {
		for k, v := range ids {
			s = strings.ReplaceAll(s, k, v)
		}
		return s
	}
	rota := `{"name":"First line","tier":"L1","time_zone":"Asia/Kolkata","handover":"08:00","shift_length":"24h","start_date":"2026-01-01","members":["{user}"]}`
	policy := `{"name":"critical","severity":"critical","steps":[{"kind":"notify_tier","tier":"L1","channels":["email"]},{"kind":"wait","wait":"5m"},{"kind":"notify_tier","tier":"L2"}]}`

	tests := []struct {
		name, method, path, body string
		code                     int
		contains                 []string
		keep                     string // remember the answer's "id" under this name
	}{
		{"without credentials", "GET", "/api/v1/rotas", "", 401, nil, ""},
		{"no contacts yet", "GET", "/api/v1/contacts", "", 200, []string{`"items":[]`}, ""},
		{"contact of an unknown user", "PUT", "/api/v1/contacts/nobody", `{"email":"x@example.net","channels":["email"]}`, 400, []string{`"field":"user_id"`}, ""},
		{"contact with a bad phone", "PUT", "/api/v1/contacts/{user}", `{"phone":"12345","channels":["sms"]}`, 400, []string{`"field":"phone"`, "E.164"}, ""},
		{"user id differs from the path", "PUT", "/api/v1/contacts/{user}", `{"user_id":"other","email":"c@example.net"}`, 400, []string{`"field":"user_id"`}, ""},
		{"unknown field", "PUT", "/api/v1/contacts/{user}", `{"mail":"c@example.net"}`, 400, []string{"unknown field"}, ""},
		{"set a contact", "PUT", "/api/v1/contacts/{user}", `{"email":"carol@example.net","phone":"+91 98765 43210","channels":["sms","email"]}`, 200,
			[]string{`"phone":"+919876543210"`, `"channels":["email","sms"]`}, ""},
		{"create it again", "POST", "/api/v1/contacts", `{"user_id":"{user}","email":"carol@example.net"}`, 400, []string{`"field":"user_id"`}, ""},
		{"read it", "GET", "/api/v1/contacts/{user}", "", 200, []string{`"email":"carol@example.net"`}, ""},
		{"rota with a bad zone", "POST", "/api/v1/rotas", strings.Replace(rota, "Asia/Kolkata", "Mars/Olympus", 1), 400, []string{`"field":"time_zone"`}, ""},
		{"create a rota", "POST", "/api/v1/rotas", rota, 201, []string{`"tier":"L1"`, `"shift_length":"24h0m0s"`}, "{rota}"},
		{"same name again", "POST", "/api/v1/rotas", strings.Replace(rota, "First line", "FIRST LINE", 1), 400, []string{`"field":"name"`}, ""},
		{"rotas by tier", "GET", "/api/v1/rotas?tier=L1", "", 200, []string{`"name":"First line"`}, ""},
		{"no L2 rota", "GET", "/api/v1/rotas?tier=L2", "", 200, []string{`"items":[]`}, ""},
		{"replace the rota", "PUT", "/api/v1/rotas/{rota}", strings.Replace(rota, "08:00", "20:00", 1), 200, []string{`"handover":"20:00"`}, ""},
		{"unknown rota", "GET", "/api/v1/rotas/none", "", 404, nil, ""},
		{"policy with a zero wait", "POST", "/api/v1/policies", strings.Replace(policy, `"5m"`, `"0s"`, 1), 400, []string{`"field":"steps[1].wait"`}, ""},
		{"create a policy", "POST", "/api/v1/policies", policy, 201, []string{`"severity":"critical"`, `"wait":"5m0s"`}, "{policy}"},
		{"list policies", "GET", "/api/v1/policies", "", 200, []string{`"name":"critical"`, oncall.DefaultPolicyName}, ""},
		{"narrow the catch-all policy", "PUT", "/api/v1/policies/{default}", `{"name":"x","severity":"critical","steps":[]}`, 409, nil, ""},
		{"delete the catch-all policy", "DELETE", "/api/v1/policies/{default}", "", 409, []string{"all clients"}, ""},
		{"delete the policy", "DELETE", "/api/v1/policies/{policy}", "", 204, nil, ""},
		{"deleted policy", "GET", "/api/v1/policies/{policy}", "", 404, nil, ""},
		{"delete the rota", "DELETE", "/api/v1/rotas/{rota}", "", 204, nil, ""},
		{"delete the contact", "DELETE", "/api/v1/contacts/{user}", "", 204, nil, ""},
		{"delete it again", "DELETE", "/api/v1/contacts/{user}", "", 404, nil, ""},
	}
	for _, tt := range tests {
		h := bearer(th.apiToken)
		if tt.name == "without credentials" {
			h = nil
		}
		code, body := th.do(t, tt.method, expand(tt.path), h, expand(tt.body))
		if code != tt.code {
			t.Errorf("%s: %s %s answered %d %s, want %d", tt.name, tt.method, tt.path, code, body, tt.code)
			continue
		}
		for _, want := range tt.contains {
			if !strings.Contains(body, want) {
				t.Errorf("%s: the answer lacks %s:\n%s", tt.name, want, body)
			}
		}
		if tt.keep != "" {
			var v struct{ ID string }
			if err := json.Unmarshal([]byte(body), &v); err != nil || v.ID == "" {
				t.Fatalf("%s: no id in %s", tt.name, body)
			}
			ids[tt.keep] = v.ID
		}
	}
	if code, _ := th.do(t, "GET", "/api/v1/contacts/"+userID, bearer(th.apiToken), ""); code != http.StatusNotFound {
		t.Errorf("the deleted contact answers %d", code)
	}
}
