package oncall_test

import (
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/serversage/sage/internal/oncall"
)

func notifyTier(tier oncall.Tier, ch ...string) oncall.Step {
	return oncall.Step{Kind: oncall.KindNotifyTier, Tier: tier, Channels: ch}
}

func notifyUser(id string) oncall.Step { return oncall.Step{Kind: oncall.KindNotifyUser, UserID: id} }

func wait(d time.Duration) oncall.Step {
	return oncall.Step{Kind: oncall.KindWait, Wait: oncall.Duration(d)}
}

func repeat(n int) oncall.Step { return oncall.Step{Kind: oncall.KindRepeat, Times: n} }

// tick is one call of Advance on a timeline: at minute m after the incident fired, acked or not,
// it must ask for these notifications (as "step/repeat") and leave the state waiting until
// minute waitUntil (-1: not waiting) or done.
type tick struct {
	m         int
	acked     bool
	want      []string
	waitUntil int
	done      bool
}

func TestAdvanceTimeline(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	minute := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	tests := []struct {
		name   string
		policy oncall.Policy
		ticks  []tick
	}{
		{
			name:   "default: L1, no ack, L2 after 15 min, ack stops it",
			policy: oncall.DefaultPolicy(),
			ticks: []tick{
				{m: 0, want: []string{"0/0"}, waitUntil: 15},
				{m: 5, waitUntil: 15},
				{m: 14, waitUntil: 15},
				{m: 15, want: []string{"2/0"}, waitUntil: 30},
				{m: 20, acked: true, waitUntil: -1, done: true},
				{m: 30, waitUntil: -1, done: true}, // acked stays done even if the caller forgets
			},
		},
		{
			name:   "default without ack reaches L3 and ends",
			policy: oncall.DefaultPolicy(),
			ticks: []tick{
				{m: 0, want: []string{"0/0"}, waitUntil: 15},
				{m: 16, want: []string{"2/0"}, waitUntil: 31}, // the wait counts from when it began
				{m: 31, want: []string{"4/0"}, waitUntil: -1, done: true},
				{m: 60, waitUntil: -1, done: true},
			},
		},
		{
			name:   "ack before the first call notifies nobody",
			policy: oncall.DefaultPolicy(),
			ticks:  []tick{{m: 0, acked: true, waitUntil: -1, done: true}},
		},
		{
			name:   "repeat goes back to the first step, then ends",
			policy: oncall.Policy{Steps: []oncall.Step{notifyTier(oncall.L1), wait(10 * time.Minute), repeat(2)}},
			ticks: []tick{
				{m: 0, want: []string{"0/0"}, waitUntil: 10},
				{m: 10, want: []string{"0/1"}, waitUntil: 20},
				{m: 20, want: []string{"0/2"}, waitUntil: 30},
				{m: 30, waitUntil: -1, done: true},
			},
		},
		{
			name: "a step after the repeat runs once the repeats are used up",
			policy: oncall.Policy{Steps: []oncall.Step{notifyTier(oncall.L1), wait(time.Minute), notifyTier(oncall.L2),
				repeat(1), notifyUser("boss")}},
			ticks: []tick{
				{m: 0, want: []string{"0/0"}, waitUntil: 1},
				{m: 1, want: []string{"2/0", "0/1"}, waitUntil: 2},
				{m: 2, want: []string{"2/1", "4/1"}, waitUntil: -1, done: true},
			},
		},
		{
			name:   "no waits: every step at once",
			policy: oncall.Policy{Steps: []oncall.Step{notifyTier(oncall.L1), notifyUser("u"), notifyTier(oncall.L2)}},
			ticks: []tick{
				{m: 0, want: []string{"0/0", "1/0", "2/0"}, waitUntil: -1, done: true},
				{m: 1, waitUntil: -1, done: true},
			},
		},
		{
			name:   "empty policy",
			policy: oncall.Policy{},
			ticks:  []tick{{m: 0, waitUntil: -1, done: true}},
		},
		{
			name:   "a repeat without a wait before it is passed over",
			policy: oncall.Policy{Steps: []oncall.Step{notifyTier(oncall.L1), repeat(3)}},
			ticks:  []tick{{m: 0, want: []string{"0/0"}, waitUntil: -1, done: true}},
		},
		{
			name:   "only repeats",
			policy: oncall.Policy{Steps: []oncall.Step{repeat(5), repeat(1000000)}},
			ticks:  []tick{{m: 0, waitUntil: -1, done: true}},
		},
		{
			name:   "a trailing wait ends the escalation when it is over",
			policy: oncall.Policy{Steps: []oncall.Step{notifyTier(oncall.L1), wait(5 * time.Minute)}},
			ticks: []tick{
				{m: 0, want: []string{"0/0"}, waitUntil: 5},
				{m: 5, waitUntil: -1, done: true},
			},
		},
		{
			name:   "unknown kinds and empty waits are passed over",
			policy: oncall.Policy{Steps: []oncall.Step{{Kind: "page_the_ceo"}, wait(0), notifyTier(oncall.L3)}},
			ticks:  []tick{{m: 0, want: []string{"2/0"}, waitUntil: -1, done: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st oncall.State
			for _, tk := range tt.ticks {
				now := minute(tk.m)
				next, actions := tt.policy.Advance(st, now, tk.acked)
				// Replaying the same call (a restart before the new state was stored) gives the same.
				again, againActions := tt.policy.Advance(st, now, tk.acked)
				if !reflect.DeepEqual(next, again) || !reflect.DeepEqual(actions, againActions) {
					t.Fatalf("minute %d: Advance is not deterministic: %+v %+v vs %+v %+v", tk.m, next, actions, again, againActions)
				}
				var got []string
				for _, a := range actions {
					got = append(got, strconv.Itoa(a.Step)+"/"+strconv.Itoa(a.Repeat))
					if a.Kind != tt.policy.Steps[a.Step].Kind || a.Tier != tt.policy.Steps[a.Step].Tier ||
						a.UserID != tt.policy.Steps[a.Step].UserID || !slices.Equal(a.Channels, tt.policy.Steps[a.Step].Channels) {
						t.Errorf("minute %d: action %+v does not carry its step %+v", tk.m, a, tt.policy.Steps[a.Step])
					}
				}
				if !slices.Equal(got, tk.want) {
					t.Errorf("minute %d: notified %v, want %v", tk.m, got, tk.want)
				}
				wantWait := time.Time{}
				if tk.waitUntil >= 0 {
					wantWait = minute(tk.waitUntil)
				}
				if !next.WaitUntil.Equal(wantWait) || next.Done != tk.done {
					t.Errorf("minute %d: state %+v, want waiting until %v, done %v", tk.m, next, wantWait, tk.done)
				}
				st = next
			}
		})
	}
}

func TestAdvanceCopiesChannels(t *testing.T) {
	p := oncall.Policy{Steps: []oncall.Step{notifyTier(oncall.L1, "email", "sms")}}
	_, actions := p.Advance(oncall.State{}, time.Now(), false)
	actions[0].Channels[0] = "pigeon"
	if p.Steps[0].Channels[0] != "email" {
		t.Error("an action shares its channels with the policy's step")
	}
}

func TestAdvanceStepBeyondThePolicy(t *testing.T) {
	// The policy was edited to fewer steps while an escalation waited at step 3.
	p := oncall.Policy{Steps: []oncall.Step{notifyTier(oncall.L1)}}
	now := time.Now()
	next, actions := p.Advance(oncall.State{Step: 3, WaitUntil: now.Add(-time.Second)}, now, false)
	if !next.Done || actions != nil {
		t.Errorf("got %+v %v, want done and nothing", next, actions)
	}
	next, actions = p.Advance(oncall.State{Step: -4, Repeats: -1}, now, false)
	if !next.Done || len(actions) != 1 || actions[0].Step != 0 || actions[0].Repeat != 0 {
		t.Errorf("negative state: got %+v %v, want step 0 run", next, actions)
	}
}

func TestActionChannelsFor(t *testing.T) {
	both := oncall.Person{Channels: []string{"email", "sms"}}
	emailOnly := oncall.Person{Channels: []string{"email"}}
	for _, tt := range []struct {
		step   []string
		person oncall.Person
		want   []string
	}{
		{[]string{"sms", "email"}, both, []string{"email", "sms"}},
		{[]string{"sms"}, emailOnly, nil},
		{[]string{"email", "sms"}, emailOnly, []string{"email"}},
		{nil, both, []string{"email", "sms"}},
		{nil, oncall.Person{}, nil},
	} {
		if got := (oncall.Action{Channels: tt.step}).ChannelsFor(tt.person); !slices.Equal(got, tt.want) {
			t.Errorf("step %v, person %v: %v, want %v", tt.step, tt.person.Channels, got, tt.want)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	if fe := oncall.DefaultPolicy().Validate(); fe != nil {
		t.Fatalf("the default policy is invalid: %v", fe)
	}
	ok := oncall.Policy{Name: "P", Severity: " Critical ", Steps: []oncall.Step{
		notifyTier("l1", "EMAIL"), wait(time.Minute), notifyUser("u"), repeat(2)}}
	if fe := ok.Validate(); fe != nil {
		t.Fatalf("valid policy refused: %v", fe)
	}
	if ok.Steps[0].Tier != "l1" || ok.Steps[0].Channels[0] != "EMAIL" {
		t.Error("Validate changed the caller's steps")
	}
	for _, tt := range []struct {
		name  string
		steps []oncall.Step
		mod   func(p *oncall.Policy)
		field string
		msg   string
	}{
		{"no name", nil, func(p *oncall.Policy) { p.Name = "" }, "name", "is required"},
		{"severity", nil, func(p *oncall.Policy) { p.Severity = "very bad" }, "severity", "such as critical"},
		{"no kind", []oncall.Step{{}}, nil, "steps[0].kind", "is required"},
		{"unknown kind", []oncall.Step{{Kind: "call"}}, nil, "steps[0].kind", "not a step kind"},
		{"no tier", []oncall.Step{{Kind: oncall.KindNotifyTier}}, nil, "steps[0].tier", "is required"},
		{"bad tier", []oncall.Step{notifyTier("L9")}, nil, "steps[0].tier", "not a tier"},
		{"no user", []oncall.Step{{Kind: oncall.KindNotifyUser}}, nil, "steps[0].user_id", "is required"},
		{"bad channel", []oncall.Step{notifyTier(oncall.L1, "email", "fax")}, nil, "steps[0].channels[1]", "not a channel"},
		{"channel twice", []oncall.Step{notifyTier(oncall.L1, "sms", "sms")}, nil, "steps[0].channels[1]", "twice"},
		{"zero wait", []oncall.Step{notifyTier(oncall.L1), notifyTier(oncall.L2), wait(0)}, nil, "steps[2].wait", "must be > 0"},
		{"negative wait", []oncall.Step{wait(-time.Second)}, nil, "steps[0].wait", "must be > 0"},
		{"long wait", []oncall.Step{wait(8 * 24 * time.Hour)}, nil, "steps[0].wait", "at most"},
		{"fractional wait", []oncall.Step{wait(1500 * time.Millisecond)}, nil, "steps[0].wait", "whole number of seconds"},
		{"repeat 0", []oncall.Step{wait(time.Minute), repeat(0)}, nil, "steps[1].times", "from 1 to 10"},
		{"repeat 11", []oncall.Step{wait(time.Minute), repeat(11)}, nil, "steps[1].times", "from 1 to 10"},
		{"repeat without wait", []oncall.Step{notifyTier(oncall.L1), repeat(1), wait(time.Minute)}, nil, "steps[1].times", "needs a wait step before it"},
		{"tier on a wait", []oncall.Step{{Kind: oncall.KindWait, Wait: oncall.Duration(time.Minute), Tier: oncall.L1}}, nil, "steps[0].tier", "only for notify_tier"},
		{"user on a tier step", []oncall.Step{{Kind: oncall.KindNotifyTier, Tier: oncall.L1, UserID: "u"}}, nil, "steps[0].user_id", "only for notify_user"},
		{"channels on a wait", []oncall.Step{{Kind: oncall.KindWait, Wait: oncall.Duration(time.Minute), Channels: []string{"sms"}}}, nil, "steps[0].channels", "only for notify"},
		{"wait on a notify", []oncall.Step{{Kind: oncall.KindNotifyUser, UserID: "u", Wait: oncall.Duration(time.Minute)}}, nil, "steps[0].wait", "only for wait"},
		{"times on a notify", []oncall.Step{{Kind: oncall.KindNotifyUser, UserID: "u", Times: 2}}, nil, "steps[0].times", "only for repeat"},
		{"too many steps", slices.Repeat([]oncall.Step{notifyTier(oncall.L1)}, 51), nil, "steps", "more than 50"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := oncall.Policy{Name: "P", Steps: tt.steps}
			if tt.mod != nil {
				tt.mod(&p)
			}
			wantFieldIn(t, p.Validate(), tt.field, tt.msg)
		})
	}
}

// FuzzAdvance runs arbitrary policies, valid or not, from arbitrary states: Advance must never
// panic, end every call, ask for each step at most once per call, never go back in repeats, and
// a valid policy left unacknowledged must finish within a bounded number of calls.
func FuzzAdvance(f *testing.F) {
	f.Add([]byte{0, 1, 1, 2, 15, 0, 1, 2, 3, 2, 1}, int64(0), false)
	f.Add([]byte{3, 5, 3, 9, 3, 255}, int64(1000), false)
	f.Add([]byte{2, 0, 0, 1, 3, 200}, int64(-5), true)
	f.Add([]byte{0, 1, 0, 2, 0, 3}, int64(7), false)
	f.Fuzz(func(t *testing.T, program []byte, startMinutes int64, ackAtEnd bool) {
		var p oncall.Policy
		kinds := []string{oncall.KindNotifyTier, oncall.KindNotifyUser, oncall.KindWait, oncall.KindRepeat, "", "bogus"}
		for i := 0; i+1 < len(program) && len(p.Steps) < 60; i += 2 {
			s := oncall.Step{Kind: kinds[int(program[i])%len(kinds)]}
			arg := int8(program[i+1])
			switch s.Kind {
			case oncall.KindNotifyTier:
				s.Tier = oncall.Tiers[int(program[i+1])%3]
			case oncall.KindNotifyUser:
				s.UserID = "u" + strconv.Itoa(int(arg))
			case oncall.KindWait:
				s.Wait = oncall.Duration(time.Duration(arg) * time.Minute)
			case oncall.KindRepeat:
				s.Times = int(arg)
				if arg == -128 {
					s.Times = 1 << 40
				}
			}
			p.Steps = append(p.Steps, s)
		}
		now := time.Unix(0, 0).Add(time.Duration(startMinutes%(1<<30)) * time.Minute)
		var st oncall.State
		if len(program) > 0 {
			st.Step = int(int8(program[0])) // arbitrary, even negative or beyond the steps
		}
		valid := len((oncall.Policy{Name: "n", Steps: p.Steps}).Validate()) == 0
		calls := 0
		for ; calls < 2000 && !st.Done; calls++ {
			next, actions := p.Advance(st, now, false)
			if len(actions) > len(p.Steps) {
				t.Fatalf("one call asked for %d notifications from %d steps", len(actions), len(p.Steps))
			}
			seen := map[[2]int]bool{}
			for _, a := range actions {
				k := [2]int{a.Step, a.Repeat}
				if seen[k] || a.Step < 0 || a.Step >= len(p.Steps) {
					t.Fatalf("action %+v repeated or out of range in one call", a)
				}
				seen[k] = true
			}
			if next.Repeats < max(st.Repeats, 0) {
				t.Fatalf("repeats went back: %+v -> %+v", st, next)
			}
			if !next.Done && next.WaitUntil.IsZero() {
				t.Fatalf("not done and not waiting after a call: %+v", next)
			}
			st = next
			if !st.WaitUntil.IsZero() {
				now = st.WaitUntil
			}
		}
		if valid && !st.Done {
			t.Fatalf("a valid policy of %d steps was not done after %d calls", len(p.Steps), calls)
		}
		if ackAtEnd {
			next, actions := p.Advance(st, now, true)
			if !next.Done || actions != nil {
				t.Fatalf("acked: %+v %v", next, actions)
			}
		}
	})
}
