package oncall

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/config"
)

// Step kinds.
const (
	// KindNotifyTier notifies whoever is on call for Tier (OnCall) by Channels.
	KindNotifyTier = "notify_tier"
	// KindNotifyUser notifies the user UserID by Channels.
	KindNotifyUser = "notify_user"
	// KindWait waits Wait before the next step; an acknowledgement meanwhile ends the escalation.
	KindWait = "wait"
	// KindRepeat goes back to the first step, at most Times times per escalation.
	KindRepeat = "repeat"
)

// Kinds lists the step kinds.
var Kinds = []string{KindNotifyTier, KindNotifyUser, KindWait, KindRepeat}

// Step is one step of an escalation policy. Only the fields of its kind are set.
type Step struct {
	Kind   string `json:"kind"`
	Tier   Tier   `json:"tier,omitempty"`    // notify_tier
	UserID string `json:"user_id,omitempty"` // notify_user
	// Channels of a notify step, from "email" and "sms". Each recipient gets those of them they
	// have switched on (Action.ChannelsFor); none listed means each recipient's own choice.
	Channels []string `json:"channels,omitempty"`
	Wait     Duration `json:"wait,omitempty"`  // wait: 1s to 7 days, whole seconds
	Times    int      `json:"times,omitempty"` // repeat: 1 to 10
}

// Policy is an escalation policy: what to do, step by step, while an incident is not
// acknowledged. Policies are chosen by client and severity, most specific first (PolicyFor).
type Policy struct {
	ID   string `json:"id"`
	Name string `json:"name"` // unique ignoring case
	// ClientID is the client whose incidents the policy handles; "" for all clients.
	ClientID string `json:"client_id,omitempty"`
	// Severity is the incident severity the policy handles (its alert's severity label, such as
	// critical or warning, lower case); "" for any.
	Severity  string    `json:"severity"`
	Steps     []Step    `json:"steps"` // may be empty: incidents under the policy notify nobody
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// State is where an escalation is: the caller keeps it with the incident, passes it to Advance
// and stores what Advance returns. The zero State is an escalation about to start.
type State struct {
	Step    int `json:"step"`    // the next step to run; while waiting, the wait step
	Repeats int `json:"repeats"` // how many times a repeat step has gone back to the first step
	// WaitUntil is when the wait at Step ends; zero when not waiting.
	WaitUntil time.Time `json:"wait_until"`
	Done      bool      `json:"done"` // acknowledged, or every step run
}

// Action is a notification Advance asks for. Step and Repeat identify it within the escalation:
// a notification keyed by (incident, Step, Repeat, recipient, channel) is sent at most once even
// when Advance is replayed after a restart.
type Action struct {
	Step     int      `json:"step"`   // index of the notify step in Policy.Steps
	Repeat   int      `json:"repeat"` // State.Repeats when the step ran: 0 on the first pass
	Kind     string   `json:"kind"`   // notify_tier or notify_user
	Tier     Tier     `json:"tier,omitempty"`
	UserID   string   `json:"user_id,omitempty"`
	Channels []string `json:"channels,omitempty"` // as in the step; see ChannelsFor
}

// ChannelsFor returns the channels to notify p by for a: the action's channels that p has
// switched on, or all of p's when the action lists none. Empty means p cannot be reached by
// this step.
func (a Action) ChannelsFor(p Person) []string {
	if len(a.Channels) == 0 {
		return slices.Clone(p.Channels)
	}
	var out []string
	for _, c := range AllChannels {
		if slices.Contains(a.Channels, c) && slices.Contains(p.Channels, c) {
			out = append(out, c)
		}
	}
	return out
}

// Advance runs the policy from st at the instant now and returns the new state and the
// notifications to send, in step order. It is pure: the same arguments always give the same
// result, so a caller that replays it after a restart asks for the same notifications again
// (and its dedupe on Action.Step and Action.Repeat drops them).
//
//   - Once acked, or once Done, nothing more happens: Done, no actions.
//   - While waiting (now before WaitUntil), nothing happens.
//   - Otherwise, from the current step (the one after the wait that just ended), notify steps
//     run at once in order, each giving an Action, until a wait step, which sets WaitUntil to
//     now plus its duration and stops, or the end of the steps, which is Done.
//   - A repeat step goes back to the first step while Repeats < Times, counting one more
//     repeat; after that it is passed over. A repeat goes back only if a wait of positive
//     duration precedes it: without one it would notify the same people again in the same
//     instant, for ever (Validate refuses such a policy; Advance passes over the repeat).
//     Repeats counts the going back of all repeat steps together.
//   - Unknown step kinds and waits of no positive duration are passed over.
//
// Every call ends after at most twice the number of steps, and asks for each step at most once.
func (p Policy) Advance(st State, now time.Time, acked bool) (next State, actions []Action) {
	if acked || st.Done {
		return State{Step: st.Step, Repeats: st.Repeats, Done: true}, nil
	}
	st.Step, st.Repeats = max(st.Step, 0), max(st.Repeats, 0)
	if !st.WaitUntil.IsZero() {
		if now.Before(st.WaitUntil) {
			return st, nil
		}
		st.WaitUntil = time.Time{}
		st.Step++
	}
	for st.Step < len(p.Steps) {
		s := p.Steps[st.Step]
		switch s.Kind {
		case KindNotifyTier, KindNotifyUser:
			actions = append(actions, Action{
				Step: st.Step, Repeat: st.Repeats, Kind: s.Kind, Tier: s.Tier, UserID: s.UserID,
				Channels: slices.Clone(s.Channels),
			})
		case KindWait:
			if s.Wait > 0 {
				st.WaitUntil = now.Add(s.Wait.D())
				return st, actions
			}
		case KindRepeat:
			if st.Repeats < s.Times && p.waitBefore(st.Step) {
				st.Repeats++
				st.Step = 0
				continue
			}
		}
		st.Step++
	}
	st.Done = true
	return st, actions
}

// waitBefore reports whether a wait of positive duration comes before step i.
func (p Policy) waitBefore(i int) bool {
	for _, s := range p.Steps[:i] {
		if s.Kind == KindWait && s.Wait > 0 {
			return true
		}
	}
	return false
}

// severityRE is what an alert's severity label looks like here: a short lower-case word.
var severityRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

func (p *Policy) normalize() {
	p.Name = strings.TrimSpace(p.Name)
	p.ClientID = strings.TrimSpace(p.ClientID)
	p.Severity = strings.ToLower(strings.TrimSpace(p.Severity))
	if len(p.Steps) == 0 {
		p.Steps = nil
	}
	for i := range p.Steps {
		s := &p.Steps[i]
		s.Kind = strings.ToLower(strings.TrimSpace(s.Kind))
		s.Tier = Tier(strings.ToUpper(strings.TrimSpace(string(s.Tier))))
		s.UserID = strings.TrimSpace(s.UserID)
		if len(s.Channels) == 0 {
			s.Channels = nil
		}
		for j, c := range s.Channels {
			s.Channels[j] = strings.ToLower(strings.TrimSpace(c))
		}
	}
}

// clone returns p with its own copies of the steps and their channels, so that normalising it
// leaves the caller's policy alone.
func (p Policy) clone() Policy {
	p.Steps = slices.Clone(p.Steps)
	for i := range p.Steps {
		p.Steps[i].Channels = slices.Clone(p.Steps[i].Channels)
	}
	return p
}

// Validate checks p as CreatePolicy and UpdatePolicy would (after trimming and lower-casing),
// without looking at the database: that the client and the users exist is checked there.
func (p Policy) Validate() []config.FieldError {
	p = p.clone()
	p.normalize()
	return p.validate()
}

func (p *Policy) validate() []config.FieldError {
	var fe fieldErrs
	fe.text("name", p.Name, true, maxName)
	fe.id("client_id", p.ClientID, false)
	if p.Severity != "" && !severityRE.MatchString(p.Severity) {
		fe.add("severity", "must be a severity such as critical or warning (a-z, 0-9, _ and -, at most 32), or empty for any")
	}
	if len(p.Steps) > maxSteps {
		fe.add("steps", "has more than %d steps", maxSteps)
	}
	for i, s := range p.Steps {
		f := "steps[" + strconv.Itoa(i) + "]."
		notify := s.Kind == KindNotifyTier || s.Kind == KindNotifyUser
		switch s.Kind {
		case "":
			fe.add(f+"kind", "is required")
		case KindNotifyTier:
			switch {
			case s.Tier == "":
				fe.add(f+"tier", "is required")
			case !s.Tier.Valid():
				fe.add(f+"tier", "%q is not a tier; use L1, L2 or L3", s.Tier)
			}
		case KindNotifyUser:
			fe.id(f+"user_id", s.UserID, true)
		case KindWait:
			switch d := s.Wait.D(); {
			case d <= 0:
				fe.add(f+"wait", "must be > 0")
			case d > maxWait:
				fe.add(f+"wait", "must be at most %s", maxWait)
			case d%time.Second != 0:
				fe.add(f+"wait", "must be a whole number of seconds")
			}
		case KindRepeat:
			switch {
			case s.Times < 1 || s.Times > maxRepeat:
				fe.add(f+"times", "must be from 1 to %d", maxRepeat)
			case !p.waitBefore(i):
				fe.add(f+"times", "a repeat needs a wait step before it, else it notifies the same people again at once")
			}
		default:
			fe.add(f+"kind", "%q is not a step kind; use %s", s.Kind, strings.Join(Kinds, ", "))
		}
		if s.Kind == "" || !slices.Contains(Kinds, s.Kind) {
			continue
		}
		if s.Tier != "" && s.Kind != KindNotifyTier {
			fe.add(f+"tier", "is only for notify_tier steps")
		}
		if s.UserID != "" && s.Kind != KindNotifyUser {
			fe.add(f+"user_id", "is only for notify_user steps")
		}
		if len(s.Channels) > 0 && !notify {
			fe.add(f+"channels", "is only for notify steps")
		} else {
			fe.channels(f+"channels", s.Channels)
		}
		if s.Wait != 0 && s.Kind != KindWait {
			fe.add(f+"wait", "is only for wait steps")
		}
		if s.Times != 0 && s.Kind != KindRepeat {
			fe.add(f+"times", "is only for repeat steps")
		}
	}
	return fe
}

// DefaultPolicyName names the policy EnsureDefaults creates.
const DefaultPolicyName = "Default: L1, then L2 after 15 min, then L3 after 30 min"

// DefaultPolicy is the policy a fresh hub starts with, for all clients and any severity: notify
// whoever is on call for L1 by email and SMS; if nobody has acknowledged 15 minutes later, L2;
// 15 minutes after that (30 minutes in), L3. It does not repeat: by then three tiers know.
func DefaultPolicy() Policy {
	both := func() []string { return []string{ChannelEmail, ChannelSMS} }
	return Policy{
		Name: DefaultPolicyName,
		Steps: []Step{
			{Kind: KindNotifyTier, Tier: L1, Channels: both()},
			{Kind: KindWait, Wait: Duration(15 * time.Minute)},
			{Kind: KindNotifyTier, Tier: L2, Channels: both()},
			{Kind: KindWait, Wait: Duration(15 * time.Minute)},
			{Kind: KindNotifyTier, Tier: L3, Channels: both()},
		},
	}
}
