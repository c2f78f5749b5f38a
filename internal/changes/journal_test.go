package changes

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readAll(t *testing.T, j *Journal, from uint64) []Event {
	t.Helper()
	var out []Event
	if err := j.Read(from, func(e Event) bool { out = append(out, e); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func mkEvents(n int, tag string) []Event {
	ev := make([]Event, n)
	for i := range ev {
		ev[i] = Event{Host: "h", Time: time.Unix(1, 0).UTC(), Kind: "packages", Object: fmt.Sprintf("%s-%d", tag, i), Action: Added, After: Object{"version": "1"}}
	}
	return ev
}

func TestJournalRestartAndCursor(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(mkEvents(3, "a")); err != nil {
		t.Fatal(err)
	}
	if err := j.Acknowledge(2); err != nil {
		t.Fatal(err)
	}
	if err := j.Acknowledge(9); err == nil {
		t.Error("acknowledging unwritten records accepted")
	}
	j.Close()
	j, err = OpenJournal(dir, JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	all := readAll(t, j, 0)
	if len(all) != 3 || all[0].Seq != 1 || all[2].Object != "a-2" {
		t.Fatalf("after restart: %+v", all)
	}
	if j.Acked() != 2 {
		t.Fatalf("cursor %d after restart, want 2", j.Acked())
	}
	var pending []uint64
	j.Pending(func(e Event) bool { pending = append(pending, e.Seq); return true })
	if len(pending) != 1 || pending[0] != 3 {
		t.Fatalf("pending %v, want [3]", pending)
	}
	if err := j.Append(mkEvents(1, "b")); err != nil {
		t.Fatal(err)
	}
	if all := readAll(t, j, 4); len(all) != 1 || all[0].Seq != 4 {
		t.Fatalf("seq after restart: %+v", all)
	}
}

func TestJournalBoundDropsOldest(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, JournalOptions{MaxBytes: 8 << 10, SegmentBytes: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := range 100 {
		if err := j.Append(mkEvents(2, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	st := j.Stats()
	if st.Bytes > 8<<10+2<<10+1024 || st.Dropped == 0 {
		t.Fatalf("stats %+v: want bounded size and drops", st)
	}
	all := readAll(t, j, 0)
	if uint64(len(all))+st.Dropped != 200 {
		t.Fatalf("%d kept + %d dropped != 200", len(all), st.Dropped)
	}
	if all[len(all)-1].Seq != 200 || all[0].Seq != st.Dropped+1 {
		t.Fatalf("kept %d..%d, dropped %d", all[0].Seq, all[len(all)-1].Seq, st.Dropped)
	}
	var disk int64
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		fi, _ := os.Stat(f)
		disk += fi.Size()
	}
	if disk != st.Bytes {
		t.Fatalf("on disk %d bytes, stats say %d", disk, st.Bytes)
	}
}

func TestJournalTornRecord(t *testing.T) {
	for _, tt := range []struct {
		name string
		tail string
	}{
		{"partial line", `1234abcd {"seq":3,"kind":"pack`},
		{"bad crc", "00000000 {\"seq\":3}\n"},
		{"garbage", "\x00\x00\x00"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			j, err := OpenJournal(dir, JournalOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Append(mkEvents(2, "a")); err != nil {
				t.Fatal(err)
			}
			j.Close()
			files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
			f, _ := os.OpenFile(files[len(files)-1], os.O_WRONLY|os.O_APPEND, 0)
			f.WriteString(tt.tail)
			f.Close()
			j, err = OpenJournal(dir, JournalOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			if st := j.Stats(); st.TornBytes != int64(len(tt.tail)) {
				t.Fatalf("torn bytes %d, want %d", st.TornBytes, len(tt.tail))
			}
			if err := j.Append(mkEvents(1, "b")); err != nil {
				t.Fatal(err)
			}
			all := readAll(t, j, 0)
			if len(all) != 3 || all[2].Seq != 3 || all[2].Object != "b-0" {
				t.Fatalf("after recovery: %+v", all)
			}
		})
	}
}

func FuzzJournalRecord(f *testing.F) {
	f.Add([]byte("1234abcd {\"seq\":1}\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = decodeRecord(b) })
}
