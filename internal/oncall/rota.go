package oncall

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/serversage/sage/internal/config"
)

// Rota says who of a tier is on call when: its members take shifts in turn, the first member's
// shift starting at the hand-over time on the start date, each shift ShiftLength of wall-clock
// time long in the rota's time zone.
//
// Shifts are counted on the wall clock, not in elapsed time, so a hand-over at 08:00 stays at
// 08:00 local time across daylight-saving changes (that day's 24-hour shift lasts 23 or 25
// hours), and 12-hour shifts from 08:00 hand over at 08:00 and 20:00 every day. A hand-over whose
// wall time does not exist (the hour skipped when clocks go forward) happens when the clocks
// jump; one whose wall time occurs twice (clocks going back) happens at the first occurrence.
//
// Overrides replace the scheduled person for their interval, also before the start date and in
// a rota without members; where overrides overlap, the latest created wins.
type Rota struct {
	ID   string `json:"id"`
	Name string `json:"name"` // unique ignoring case
	Tier Tier   `json:"tier"`
	// ClientID is the client whose incidents this rota covers; "" covers every client that has
	// no rota of its own for the tier.
	ClientID    string   `json:"client_id,omitempty"`
	TimeZone    string   `json:"time_zone"`    // IANA name, e.g. "Asia/Kolkata"
	Handover    string   `json:"handover"`     // time of day "HH:MM" in TimeZone
	ShiftLength Duration `json:"shift_length"` // 1h to 90 days, whole minutes: 12h, 24h, 168h for weekly
	StartDate   string   `json:"start_date"`   // "YYYY-MM-DD" in TimeZone: the first shift starts then at Handover
	Members     []string `json:"members"`      // user ids in rotation order; one may appear more than once
	// Overrides are read with the rota and ignored by CreateRota and UpdateRota: they are
	// written on their own (CreateOverride...), so that editing the rota keeps them.
	Overrides []Override `json:"overrides"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// Override puts a user on call in a rota from From until Until (exclusive), whoever the rota
// schedules then: a swap, a holiday cover.
type Override struct {
	ID        string    `json:"id"`
	RotaID    string    `json:"rota_id"`
	UserID    string    `json:"user_id"`
	From      time.Time `json:"from"`
	Until     time.Time `json:"until"`
	Note      string    `json:"note"`
	CreatedAt time.Time `json:"created_at"` // where overrides overlap, the latest created wins
	UpdatedAt time.Time `json:"updated_at"`
}

// Shift is one person's time on call, for a calendar.
type Shift struct {
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	UserID string    `json:"user_id"`
	// OverrideID is the override that put UserID on call, "" for the rota's own schedule.
	OverrideID string `json:"override_id,omitempty"`
}

// MaxShifts bounds what Shifts returns: a calendar of a quarter in 2-hour shifts fits.
const MaxShifts = 2000

func (r *Rota) normalize() {
	r.Name = strings.TrimSpace(r.Name)
	r.Tier = Tier(strings.ToUpper(strings.TrimSpace(string(r.Tier))))
	r.ClientID = strings.TrimSpace(r.ClientID)
	r.TimeZone = strings.TrimSpace(r.TimeZone)
	r.Handover = strings.TrimSpace(r.Handover)
	r.StartDate = strings.TrimSpace(r.StartDate)
	if len(r.Members) == 0 {
		r.Members = nil
	}
	for i, m := range r.Members {
		r.Members[i] = strings.TrimSpace(m)
	}
}

// Validate checks r as CreateRota and UpdateRota would (after trimming), without looking at the
// database: that the client and the members exist is checked there.
func (r Rota) Validate() []config.FieldError {
	r.Members = slices.Clone(r.Members)
	r.normalize()
	return r.validate()
}

func (r *Rota) validate() []config.FieldError {
	var fe fieldErrs
	fe.text("name", r.Name, true, maxName)
	switch {
	case r.Tier == "":
		fe.add("tier", "is required")
	case !r.Tier.Valid():
		fe.add("tier", "%q is not a tier; use L1, L2 or L3", r.Tier)
	}
	fe.id("client_id", r.ClientID, false)
	switch {
	case r.TimeZone == "":
		fe.add("time_zone", "is required, as an IANA name such as Europe/London or Asia/Kolkata")
	case r.TimeZone == "Local":
		// "Local" is whatever zone the hub's machine is set to: a rota must not move with it.
		fe.add("time_zone", "name the zone (such as Europe/London), not Local")
	default:
		if _, err := loadLocation(r.TimeZone); err != nil {
			fe.add("time_zone", "%q is not a known IANA time zone", r.TimeZone)
		}
	}
	if _, ok := parseClock(r.Handover); !ok {
		fe.add("handover", "must be a time of day as HH:MM (00:00 to 23:59)")
	}
	switch d := r.ShiftLength.D(); {
	case d < minShift || d > maxShift:
		fe.add("shift_length", "must be from %s to %s", minShift, maxShift)
	case d%time.Minute != 0:
		fe.add("shift_length", "must be a whole number of minutes")
	}
	if _, _, _, ok := parseDate(r.StartDate); !ok {
		fe.add("start_date", "must be a date as YYYY-MM-DD (years 2000 to 2999)")
	}
	if len(r.Members) > maxMembers {
		fe.add("members", "has more than %d members", maxMembers)
	}
	for i, m := range r.Members {
		fe.id("members["+strconv.Itoa(i)+"]", m, true)
	}
	return fe
}

func (o *Override) normalize() {
	o.RotaID = strings.TrimSpace(o.RotaID)
	o.UserID = strings.TrimSpace(o.UserID)
	o.Note = strings.TrimSpace(o.Note)
	o.From = o.From.UTC().Truncate(time.Millisecond)
	o.Until = o.Until.UTC().Truncate(time.Millisecond)
}

// Validate checks o as CreateOverride and UpdateOverride would, without looking at the database.
func (o Override) Validate() []config.FieldError {
	o.normalize()
	return o.validate()
}

func (o *Override) validate() []config.FieldError {
	var fe fieldErrs
	fe.id("rota_id", o.RotaID, true)
	fe.id("user_id", o.UserID, true)
	fe.text("note", o.Note, false, maxNote)
	switch {
	case o.From.IsZero():
		fe.add("from", "is required")
	case o.Until.IsZero():
		fe.add("until", "is required")
	case !o.Until.After(o.From):
		fe.add("until", "must be after from")
	case o.Until.Sub(o.From) > maxOverride:
		fe.add("until", "an override lasts at most %d days; change the rota instead", int(maxOverride/(24*time.Hour)))
	}
	return fe
}

// At returns who is on call in r at t: the user of the latest created override covering t, else
// the member whose shift contains t. ok is false before the first shift (when no override
// covers t), for a rota without members, and for a rota whose schedule is not valid.
func (r Rota) At(t time.Time) (userID string, ok bool) {
	if i := r.overrideAt(t); i >= 0 {
		return r.Overrides[i].UserID, true
	}
	if len(r.Members) == 0 {
		return "", false
	}
	s, valid := r.schedule()
	if !valid {
		return "", false
	}
	k := s.index(t)
	if k < 0 {
		return "", false
	}
	return r.Members[k%int64(len(r.Members))], true
}

// overrideAt returns the index of the override that decides t, or -1: of those covering t, the
// latest created, ties broken by the greater id (UUIDv7 ids sort by creation) and then by the
// later position.
func (r Rota) overrideAt(t time.Time) int {
	best := -1
	for i, o := range r.Overrides {
		if o.UserID == "" || t.Before(o.From) || !t.Before(o.Until) {
			continue
		}
		if best >= 0 {
			b := r.Overrides[best]
			if o.CreatedAt.Before(b.CreatedAt) || (o.CreatedAt.Equal(b.CreatedAt) && o.ID < b.ID) {
				continue
			}
		}
		best = i
	}
	return best
}

// Shifts returns who is on call from from until to, in order, each piece clipped to the window:
// the rota's shifts, cut where overrides replace their person, and the overrides. A scheduled
// shift is one piece even when the next shift is the same person's, so that the calendar shows
// each hand-over; an override is one piece across the shifts it covers. Times with nobody on
// call have no piece. At most MaxShifts pieces are returned; a longer window is cut short.
func (r Rota) Shifts(from, to time.Time) []Shift {
	if !from.Before(to) {
		return nil
	}
	type sched struct {
		start, end time.Time
		k          int64
	}
	var schedule []sched
	loc := time.UTC
	if s, ok := r.schedule(); ok {
		loc = s.loc
		if len(r.Members) > 0 {
			for k := max(s.index(from), 0); len(schedule) < MaxShifts; k++ {
				start, end := s.start(k), s.start(k+1)
				if !start.Before(to) {
					break
				}
				start, end = later(start, from), earlier(end, to)
				if start.Before(end) {
					schedule = append(schedule, sched{start, end, k})
				}
			}
		}
	}

	bounds := []time.Time{from, to}
	for _, s := range schedule {
		bounds = append(bounds, s.start, s.end)
	}
	for _, o := range r.Overrides {
		for _, b := range []time.Time{o.From, o.Until} {
			if b.After(from) && b.Before(to) {
				bounds = append(bounds, b)
			}
		}
	}
	slices.SortFunc(bounds, func(a, b time.Time) int { return a.Compare(b) })
	bounds = slices.CompactFunc(bounds, func(a, b time.Time) bool { return a.Equal(b) })

	type key struct {
		override int // index+1 in r.Overrides; 0 for the schedule
		shift    int64
	}
	var (
		out  []Shift
		last key
		si   int // the first scheduled shift that may contain the current piece
	)
	for i := 0; i+1 < len(bounds) && len(out) <= MaxShifts; i++ {
		start, end := bounds[i], bounds[i+1]
		var (
			k    key
			user string
			oid  string
		)
		if oi := r.overrideAt(start); oi >= 0 {
			k, user, oid = key{override: oi + 1}, r.Overrides[oi].UserID, r.Overrides[oi].ID
		} else {
			for si < len(schedule) && !schedule[si].end.After(start) {
				si++
			}
			if si == len(schedule) || schedule[si].start.After(start) {
				continue // nobody on call
			}
			k = key{shift: schedule[si].k}
			user = r.Members[schedule[si].k%int64(len(r.Members))]
		}
		if n := len(out); n > 0 && last == k && out[n-1].End.Equal(start) {
			out[n-1].End = end.In(loc)
			continue
		}
		out = append(out, Shift{Start: start.In(loc), End: end.In(loc), UserID: user, OverrideID: oid})
		last = k
	}
	if len(out) > MaxShifts {
		out = out[:MaxShifts]
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// schedule is a rota's shift pattern, parsed. Wall-clock times are held as "naive" unix
// seconds: the wall time read as if it were UTC, in which a day is always 86400 s long.
type schedule struct {
	loc    *time.Location
	first  int64 // naive seconds of the first hand-over
	length int64 // seconds of wall clock per shift
}

// minScheduleShift keeps the search in index cheap for a rota that never went through Validate.
const minScheduleShift = 60

func (r Rota) schedule() (schedule, bool) {
	loc, err := loadLocation(r.TimeZone)
	if err != nil || r.TimeZone == "" || r.TimeZone == "Local" {
		return schedule{}, false
	}
	mins, ok := parseClock(r.Handover)
	if !ok {
		return schedule{}, false
	}
	y, m, d, ok := parseDate(r.StartDate)
	if !ok {
		return schedule{}, false
	}
	length := int64(r.ShiftLength.D() / time.Second)
	if length < minScheduleShift || r.ShiftLength.D() > maxShift {
		return schedule{}, false
	}
	first := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() + int64(mins)*60
	return schedule{loc: loc, first: first, length: length}, true
}

// naive returns t's wall time in its location as naive seconds.
func naive(t time.Time) int64 {
	_, off := t.Zone()
	return t.Unix() + int64(off)
}

// instant returns the instant at which the wall clock of s.loc shows the naive time c: for a
// wall time skipped by a forward change, the instant of the change; for one that occurs twice,
// the first.
func (s schedule) instant(c int64) time.Time {
	n := time.Unix(c, 0).UTC()
	t := time.Date(n.Year(), n.Month(), n.Day(), n.Hour(), n.Minute(), n.Second(), 0, s.loc)
	if w := naive(t); w != c {
		// time.Date resolved the skipped wall time into one of the zones beside the change.
		start, end := t.ZoneBounds()
		if w > c && !start.IsZero() {
			return start
		}
		if w < c && !end.IsZero() {
			return end
		}
		return t
	}
	if start, _ := t.ZoneBounds(); !start.IsZero() {
		_, off := t.Zone()
		if _, prevOff := start.Add(-time.Second).Zone(); prevOff > off {
			// Clocks went back at start: the same wall time also came prevOff-off earlier.
			if e := time.Unix(c-int64(prevOff), 0).In(s.loc); e.Before(start) && naive(e) == c {
				return e
			}
		}
	}
	return t
}

// start returns when shift k starts (shift 0 is the first).
func (s schedule) start(k int64) time.Time { return s.instant(s.first + k*s.length) }

// index returns the number of the shift that contains t: the last shift starting at or before t
// (negative before the first). Reading t's wall time gives the answer except next to a clock
// change, where it may be a few shifts off; the loops correct that.
func (s schedule) index(t time.Time) int64 {
	k := floorDiv(naive(t.In(s.loc))-s.first, s.length)
	for range 10000 {
		if !s.start(k).After(t) {
			break
		}
		k--
	}
	for range 10000 {
		if s.start(k + 1).After(t) {
			break
		}
		k++
	}
	return k
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// locations caches loaded time zones by name: LoadLocation parses the zone's data every time.
// Only names that load are kept, so the cache is bounded by the tz database.
var locations sync.Map

func loadLocation(name string) (*time.Location, error) {
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, l)
	return l, nil
}
