package oncall_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/oncall"
)

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// utc parses "2006-01-02 15:04" as UTC.
func utc(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func hours(h int) oncall.Duration { return oncall.Duration(time.Duration(h) * time.Hour) }

func TestRotaAt(t *testing.T) {
	abc := []string{"a", "b", "c"}
	type probe struct {
		at   string // UTC
		want string // "" for nobody
	}
	tests := []struct {
		name   string
		rota   oncall.Rota
		probes []probe
	}{
		{
			name: "daily in UTC, wrapping round the members",
			rota: oncall.Rota{TimeZone: "UTC", Handover: "08:00", ShiftLength: hours(24), StartDate: "2026-01-05", Members: abc},
			probes: []probe{
				{"2026-01-05 07:59", ""}, {"2026-01-05 08:00", "a"}, {"2026-01-06 07:59", "a"},
				{"2026-01-06 08:00", "b"}, {"2026-01-07 12:00", "c"}, {"2026-01-08 08:00", "a"},
				{"2027-01-05 08:00", abc[365%3]},
			},
		},
		{
			// Clocks go forward on 2026-03-29 at 01:00 UTC: the hand-over stays at 08:00 local,
			// which is 07:00 UTC from then on. Counting 24 elapsed hours would hand over at 08:00 UTC.
			name: "daily in London across spring forward",
			rota: oncall.Rota{TimeZone: "Europe/London", Handover: "08:00", ShiftLength: hours(24), StartDate: "2026-03-27", Members: abc},
			probes: []probe{
				{"2026-03-27 08:00", "a"}, {"2026-03-28 07:59", "a"}, {"2026-03-28 08:00", "b"},
				{"2026-03-29 06:59", "b"}, {"2026-03-29 07:00", "c"}, {"2026-03-30 06:59", "c"},
				{"2026-03-30 07:00", "a"},
			},
		},
		{
			// Clocks go back on 2026-10-25 at 01:00 UTC: the shift of the 24th lasts 25 hours.
			name: "daily in London across fall back",
			rota: oncall.Rota{TimeZone: "Europe/London", Handover: "08:00", ShiftLength: hours(24), StartDate: "2026-10-24", Members: abc},
			probes: []probe{
				{"2026-10-24 06:59", ""}, {"2026-10-24 07:00", "a"}, {"2026-10-25 07:59", "a"},
				{"2026-10-25 08:00", "b"}, {"2026-10-26 08:00", "c"},
			},
		},
		{
			name: "12-hour shifts hand over at 08:00 and 20:00 local across DST",
			rota: oncall.Rota{TimeZone: "America/New_York", Handover: "08:00", ShiftLength: hours(12), StartDate: "2026-03-07", Members: []string{"day", "night"}},
			probes: []probe{
				// 2026-03-07 08:00 EST = 13:00 UTC; clocks go forward 2026-03-08 07:00 UTC.
				{"2026-03-07 13:00", "day"}, {"2026-03-08 00:59", "day"}, {"2026-03-08 01:00", "night"},
				{"2026-03-08 11:59", "night"}, {"2026-03-08 12:00", "day"}, {"2026-03-09 00:00", "night"},
			},
		},
		{
			name: "weekly in a zone without DST",
			rota: oncall.Rota{TimeZone: "Asia/Kolkata", Handover: "09:30", ShiftLength: hours(168), StartDate: "2026-01-05", Members: []string{"x", "y"}},
			probes: []probe{
				// 09:30 IST = 04:00 UTC.
				{"2026-01-05 03:59", ""}, {"2026-01-05 04:00", "x"}, {"2026-01-12 03:59", "x"},
				{"2026-01-12 04:00", "y"}, {"2026-01-19 04:00", "x"},
			},
		},
		{
			// 02:30 does not exist on 2026-03-08 in New York (02:00 EST -> 03:00 EDT at 07:00
			// UTC): that day's hand-over happens as the clocks jump.
			name: "hand-over in the skipped hour happens at the jump",
			rota: oncall.Rota{TimeZone: "America/New_York", Handover: "02:30", ShiftLength: hours(24), StartDate: "2026-03-07", Members: abc},
			probes: []probe{
				{"2026-03-07 07:30", "a"}, {"2026-03-08 06:59", "a"}, {"2026-03-08 07:00", "b"},
				{"2026-03-09 06:29", "b"}, {"2026-03-09 06:30", "c"},
			},
		},
		{
			// 01:30 happens twice on 2026-11-01 in New York (05:30 and 06:30 UTC): the first counts.
			name: "hand-over in the repeated hour happens at its first occurrence",
			rota: oncall.Rota{TimeZone: "America/New_York", Handover: "01:30", ShiftLength: hours(24), StartDate: "2026-10-31", Members: abc},
			probes: []probe{
				{"2026-10-31 05:30", "a"}, {"2026-11-01 05:29", "a"}, {"2026-11-01 05:30", "b"},
				{"2026-11-01 06:30", "b"}, {"2026-11-02 06:29", "b"}, {"2026-11-02 06:30", "c"},
			},
		},
		{
			name: "a rota without members has nobody",
			rota: oncall.Rota{TimeZone: "UTC", Handover: "08:00", ShiftLength: hours(24), StartDate: "2026-01-05"},
			probes: []probe{
				{"2026-01-05 09:00", ""},
			},
		},
		{
			name: "an invalid schedule has nobody",
			rota: oncall.Rota{TimeZone: "Mars/Olympus", Handover: "08:00", ShiftLength: hours(24), StartDate: "2026-01-05", Members: abc},
			probes: []probe{
				{"2026-01-05 09:00", ""},
			},
		},
		{
			name: "overrides win; the latest created where they overlap; also before the start and without members",
			rota: oncall.Rota{TimeZone: "UTC", Handover: "08:00", ShiftLength: hours(24), StartDate: "2026-01-05", Members: abc,
				Overrides: []oncall.Override{
					{ID: "1", UserID: "o1", From: utc(t, "2026-01-05 12:00"), Until: utc(t, "2026-01-05 18:00"), CreatedAt: utc(t, "2026-01-01 00:00")},
					// Created later, listed first: still wins where they overlap.
					{ID: "0", UserID: "o2", From: utc(t, "2026-01-05 16:00"), Until: utc(t, "2026-01-05 20:00"), CreatedAt: utc(t, "2026-01-02 00:00")},
					{ID: "2", UserID: "early", From: utc(t, "2026-01-04 00:00"), Until: utc(t, "2026-01-04 01:00"), CreatedAt: utc(t, "2026-01-01 00:00")},
				}},
			probes: []probe{
				{"2026-01-04 00:30", "early"}, {"2026-01-04 01:00", ""}, {"2026-01-05 11:59", "a"},
				{"2026-01-05 12:00", "o1"}, {"2026-01-05 15:59", "o1"}, {"2026-01-05 16:00", "o2"},
				{"2026-01-05 17:59", "o2"}, {"2026-01-05 19:59", "o2"}, {"2026-01-05 20:00", "a"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range tt.probes {
				got, ok := tt.rota.At(utc(t, p.at))
				if got != p.want || ok != (p.want != "") {
					t.Errorf("At(%s UTC) = %q, %v; want %q", p.at, got, ok, p.want)
				}
			}
		})
	}
}

func TestRotaOverridesTieOnCreation(t *testing.T) {
	at := utc(t, "2026-01-05 10:00")
	from, until := utc(t, "2026-01-05 09:00"), utc(t, "2026-01-05 11:00")
	for _, tt := range []struct {
		name      string
		overrides []oncall.Override
		want      string
	}{
		{"greater id wins", []oncall.Override{{ID: "b", UserID: "x"}, {ID: "a", UserID: "y"}}, "x"},
		{"same id: later in the list", []oncall.Override{{UserID: "x"}, {UserID: "y"}}, "y"},
		{"an override without a user is ignored", []oncall.Override{{ID: "a", UserID: "x"}, {ID: "b"}}, "x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := oncall.Rota{Overrides: tt.overrides}
			for i := range r.Overrides {
				r.Overrides[i].From, r.Overrides[i].Until = from, until
			}
			if got, _ := r.At(at); got != tt.want {
				t.Errorf("At = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRotaShifts(t *testing.T) {
	london := mustZone(t, "Europe/London")
	r := oncall.Rota{TimeZone: "Europe/London", Handover: "08:00", ShiftLength: hours(24), StartDate: "2026-03-27",
		Members: []string{"a", "b"},
		Overrides: []oncall.Override{
			// Inside b's shift of the 28th.
			{ID: "o1", UserID: "x", From: utc(t, "2026-03-28 12:00"), Until: utc(t, "2026-03-28 14:00")},
			// Across the hand-over of the 30th: one piece.
			{ID: "o2", UserID: "y", From: utc(t, "2026-03-30 06:00"), Until: utc(t, "2026-03-30 09:00")},
		}}
	type piece struct{ start, end, user, override string }
	want := []piece{
		{"2026-03-27 08:00", "2026-03-28 08:00", "a", ""}, // nobody before the start
		{"2026-03-28 08:00", "2026-03-28 12:00", "b", ""},
		{"2026-03-28 12:00", "2026-03-28 14:00", "x", "o1"},
		{"2026-03-28 14:00", "2026-03-29 07:00", "b", ""}, // 23 hours: clocks go forward
		{"2026-03-29 07:00", "2026-03-30 06:00", "a", ""},
		{"2026-03-30 06:00", "2026-03-30 09:00", "y", "o2"},
		{"2026-03-30 09:00", "2026-03-31 07:00", "b", ""},
	}
	got := r.Shifts(utc(t, "2026-03-27 06:00"), utc(t, "2026-03-31 07:00"))
	// Clipped to the window on the right.
	if cut := r.Shifts(utc(t, "2026-03-27 06:00"), utc(t, "2026-03-28 10:00")); len(cut) != 2 || !cut[1].End.Equal(utc(t, "2026-03-28 10:00")) {
		t.Errorf("Shifts up to 10:00 on the 28th: %v", cut)
	}
	var gotP []piece
	for _, s := range got {
		gotP = append(gotP, piece{s.Start.UTC().Format("2006-01-02 15:04"), s.End.UTC().Format("2006-01-02 15:04"), s.UserID, s.OverrideID})
		if s.Start.Location().String() != london.String() {
			t.Errorf("shift %v is not in the rota's zone", s.Start)
		}
	}
	if !slices.Equal(gotP, want) {
		t.Errorf("Shifts:\n got %v\nwant %v", gotP, want)
	}

	if s := r.Shifts(utc(t, "2026-03-29 00:00"), utc(t, "2026-03-29 00:00")); s != nil {
		t.Errorf("empty window: %v", s)
	}
	if s := r.Shifts(utc(t, "2026-01-01 00:00"), utc(t, "2026-03-27 08:00")); s != nil {
		t.Errorf("window before the start: %v", s)
	}
	long := oncall.Rota{TimeZone: "UTC", Handover: "00:00", ShiftLength: hours(1), StartDate: "2026-01-01", Members: []string{"a"}}
	if s := long.Shifts(utc(t, "2026-01-01 00:00"), utc(t, "2027-01-01 00:00")); len(s) != oncall.MaxShifts {
		t.Errorf("a year of hourly shifts gave %d pieces, want the cap %d", len(s), oncall.MaxShifts)
	}
}

// checkShifts checks what must hold of any rota's calendar: pieces in order, not overlapping,
// inside the window, each agreeing with At at its start and just before its end, and, for shift
// lengths that are whole days, each scheduled piece that is not clipped starting at the
// hand-over's wall time unless that wall time did not exist that day.
func checkShifts(t *testing.T, r oncall.Rota, from, to time.Time) {
	t.Helper()
	shifts := r.Shifts(from, to)
	loc, _ := time.LoadLocation(r.TimeZone)
	for i, s := range shifts {
		if !s.Start.Before(s.End) || s.Start.Before(from) || s.End.After(to) {
			t.Fatalf("piece %d %v..%v is empty or outside %v..%v", i, s.Start, s.End, from, to)
		}
		if i > 0 && s.Start.Before(shifts[i-1].End) {
			t.Fatalf("piece %d starts at %v, before %d ends at %v", i, s.Start, i-1, shifts[i-1].End)
		}
		for _, at := range []time.Time{s.Start, s.End.Add(-time.Nanosecond)} {
			if u, ok := r.At(at); !ok || u != s.UserID {
				t.Fatalf("piece %d says %q at %v; At says %q, %v", i, s.UserID, at, u, ok)
			}
		}
		if s.OverrideID == "" && s.Start.After(from) && r.ShiftLength.D()%(24*time.Hour) == 0 && loc != nil &&
			(i == 0 || shifts[i-1].OverrideID == "") {
			wall := s.Start.In(loc).Format("15:04")
			if wall != r.Handover {
				// Only a hand-over in a skipped hour may differ, and then it is at the jump.
				before := s.Start.Add(-time.Nanosecond).In(loc)
				_, offBefore := before.Zone()
				_, offAt := s.Start.In(loc).Zone()
				if offBefore >= offAt {
					t.Fatalf("piece %d starts at %s local, not at the hand-over %s", i, s.Start.In(loc), r.Handover)
				}
			}
		}
	}
}

func TestRotaShiftsAgreeWithAt(t *testing.T) {
	for _, zone := range []string{"UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Sao_Paulo"} {
		for _, handover := range []string{"00:00", "01:30", "02:00", "02:30", "08:00", "23:59"} {
			for _, h := range []int{1, 8, 12, 24, 36, 168} {
				r := oncall.Rota{TimeZone: zone, Handover: handover, ShiftLength: hours(h), StartDate: "2026-01-01",
					Members: []string{"a", "b", "c"},
					Overrides: []oncall.Override{
						{ID: "1", UserID: "o", From: utc(t, "2026-03-29 00:30"), Until: utc(t, "2026-04-02 00:00")},
					}}
				checkShifts(t, r, utc(t, "2026-03-01 00:00"), utc(t, "2026-04-15 00:00"))
				checkShifts(t, r, utc(t, "2026-10-01 00:00"), utc(t, "2026-11-15 00:00"))
			}
		}
	}
}

func FuzzRotaSchedule(f *testing.F) {
	zones := []string{"UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Apia", "America/Santiago", "Africa/Casablanca"}
	f.Add(uint8(1), "08:00", int64(24*60), "2026-03-27", int64(0), int64(48*3600), uint8(3))
	f.Add(uint8(3), "01:30", int64(12*60), "2026-10-31", int64(3600), int64(7*86400), uint8(2))
	f.Add(uint8(5), "02:30", int64(60), "2026-01-01", int64(-86400), int64(86400), uint8(1))
	f.Fuzz(func(t *testing.T, zone uint8, handover string, shiftMinutes int64, start string, fromOff, span int64, n uint8) {
		r := oncall.Rota{Name: "f", Tier: oncall.L1, TimeZone: zones[int(zone)%len(zones)], Handover: handover,
			ShiftLength: oncall.Duration(time.Duration(shiftMinutes%(90*24*60+1)) * time.Minute), StartDate: start}
		for i := range int(n % 8) {
			r.Members = append(r.Members, string(rune('a'+i)))
		}
		base := utc(t, "2026-01-01 00:00")
		from := base.Add(time.Duration(fromOff%(3*366*86400)) * time.Second)
		to := from.Add(time.Duration(span%(60*86400)) * time.Second)
		if len(r.Validate()) == 0 {
			checkShifts(t, r, from, to)
		} else {
			_ = r.Shifts(from, to)
			_, _ = r.At(from)
		}
	})
}

func TestRotaValidate(t *testing.T) {
	ok := func(mod func(r *oncall.Rota)) oncall.Rota {
		r := oncall.Rota{Name: "L1 days", Tier: "l1", TimeZone: "Asia/Kolkata", Handover: "08:00", ShiftLength: hours(24),
			StartDate: "2026-01-05", Members: []string{"u1"}}
		mod(&r)
		return r
	}
	if fe := ok(func(*oncall.Rota) {}).Validate(); fe != nil {
		t.Fatalf("valid rota refused: %v", fe)
	}
	for _, tt := range []struct {
		name  string
		mod   func(r *oncall.Rota)
		field string
		msg   string
	}{
		{"no name", func(r *oncall.Rota) { r.Name = " " }, "name", "is required"},
		{"bad tier", func(r *oncall.Rota) { r.Tier = "L4" }, "tier", "not a tier"},
		{"no tier", func(r *oncall.Rota) { r.Tier = "" }, "tier", "is required"},
		{"no zone", func(r *oncall.Rota) { r.TimeZone = "" }, "time_zone", "is required"},
		{"unknown zone", func(r *oncall.Rota) { r.TimeZone = "Asia/Bangalore" }, "time_zone", "not a known"},
		{"Local", func(r *oncall.Rota) { r.TimeZone = "Local" }, "time_zone", "not Local"},
		{"hand-over 24:00", func(r *oncall.Rota) { r.Handover = "24:00" }, "handover", "HH:MM"},
		{"hand-over 8:00", func(r *oncall.Rota) { r.Handover = "8:00" }, "handover", "HH:MM"},
		{"short shift", func(r *oncall.Rota) { r.ShiftLength = oncall.Duration(30 * time.Minute) }, "shift_length", "from 1h0m0s"},
		{"long shift", func(r *oncall.Rota) { r.ShiftLength = hours(91 * 24) }, "shift_length", "from 1h0m0s"},
		{"odd shift", func(r *oncall.Rota) { r.ShiftLength = oncall.Duration(time.Hour + time.Second) }, "shift_length", "whole number of minutes"},
		{"bad date", func(r *oncall.Rota) { r.StartDate = "2026-02-30" }, "start_date", "YYYY-MM-DD"},
		{"year", func(r *oncall.Rota) { r.StartDate = "0026-02-03" }, "start_date", "years 2000"},
		{"empty member", func(r *oncall.Rota) { r.Members = []string{"u1", " "} }, "members[1]", "is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantFieldIn(t, ok(tt.mod).Validate(), tt.field, tt.msg)
		})
	}
	in := ok(func(r *oncall.Rota) { r.Members = []string{" u1 "} })
	in.Validate()
	if in.Members[0] != " u1 " {
		t.Errorf("Validate changed the caller's members: %q", in.Members)
	}
}

func TestOverrideValidate(t *testing.T) {
	from := utc(t, "2026-01-05 08:00")
	for _, tt := range []struct {
		name  string
		o     oncall.Override
		field string
		msg   string
	}{
		{"no rota", oncall.Override{UserID: "u", From: from, Until: from.Add(time.Hour)}, "rota_id", "is required"},
		{"no user", oncall.Override{RotaID: "r", From: from, Until: from.Add(time.Hour)}, "user_id", "is required"},
		{"no from", oncall.Override{RotaID: "r", UserID: "u", Until: from}, "from", "is required"},
		{"no until", oncall.Override{RotaID: "r", UserID: "u", From: from}, "until", "is required"},
		{"backwards", oncall.Override{RotaID: "r", UserID: "u", From: from, Until: from}, "until", "after from"},
		{"too long", oncall.Override{RotaID: "r", UserID: "u", From: from, Until: from.AddDate(2, 0, 0)}, "until", "at most 366 days"},
	} {
		t.Run(tt.name, func(t *testing.T) { wantFieldIn(t, tt.o.Validate(), tt.field, tt.msg) })
	}
}

func TestDurationJSON(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{`"15m"`, 15 * time.Minute, false},
		{`"24h"`, 24 * time.Hour, false},
		{`900`, 15 * time.Minute, false},
		{`1.5`, 1500 * time.Millisecond, false},
		{`"fifteen"`, 0, true},
		{`true`, 0, true},
		{`1e300`, 0, true},
		{`null`, 0, true},
	} {
		var d oncall.Duration
		err := json.Unmarshal([]byte(tt.in), &d)
		if (err != nil) != tt.err || (!tt.err && d.D() != tt.want) {
			t.Errorf("%s: %v, %v; want %v (error %v)", tt.in, d.D(), err, tt.want, tt.err)
		}
	}
	b, err := json.Marshal(struct {
		D oncall.Duration `json:"d"`
	}{oncall.Duration(90 * time.Minute)})
	if err != nil || string(b) != `{"d":"1h30m0s"}` {
		t.Errorf("Marshal: %s, %v", b, err)
	}
}

func FuzzDurationJSON(f *testing.F) {
	for _, s := range []string{`"15m"`, `900`, `-1`, `"1h2m3.5s"`, `1e18`, `"9223372036s"`, `[]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var d oncall.Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil {
			return
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("Marshal(%v): %v", d, err)
		}
		var back oncall.Duration
		if err := json.Unmarshal(b, &back); err != nil || back != d {
			t.Fatalf("%s -> %v -> %s -> %v, %v", in, d.D(), b, back.D(), err)
		}
	})
}

// wantFieldIn fails unless fes has an error on field whose message contains msg.
func wantFieldIn(t *testing.T, fes []config.FieldError, field, msg string) {
	t.Helper()
	for _, fe := range fes {
		if fe.Field == field && strings.Contains(fe.Msg, msg) {
			return
		}
	}
	t.Errorf("field errors %v, want one on %q containing %q", fes, field, msg)
}

// BenchmarkRotaAt is the cost of one rota's answer in OnCall, DST zone, with overrides to scan.
func BenchmarkRotaAt(b *testing.B) {
	r := oncall.Rota{TimeZone: "Europe/London", Handover: "08:00", ShiftLength: hours(24), StartDate: "2026-01-05",
		Members: []string{"a", "b", "c", "d"}}
	for i := range 20 {
		from := utc(b, "2026-02-01 00:00").Add(time.Duration(i) * 48 * time.Hour)
		r.Overrides = append(r.Overrides, oncall.Override{UserID: "o", From: from, Until: from.Add(time.Hour)})
	}
	at := utc(b, "2026-10-25 09:00")
	for b.Loop() {
		r.At(at)
	}
}

// BenchmarkRotaShifts is a month's calendar of 12-hour shifts.
func BenchmarkRotaShifts(b *testing.B) {
	r := oncall.Rota{TimeZone: "America/New_York", Handover: "08:00", ShiftLength: hours(12), StartDate: "2026-01-05",
		Members: []string{"a", "b", "c", "d"}}
	from, to := utc(b, "2026-10-15 00:00"), utc(b, "2026-11-15 00:00")
	for b.Loop() {
		r.Shifts(from, to)
	}
}
