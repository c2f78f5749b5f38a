package changes

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestJournalKill9 kills a process appending to the journal with SIGKILL mid-stream, several
// times, and checks that every reopen finds consecutive records and carries on numbering them.
func TestJournalKill9(t *testing.T) {
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestJournalAppenderChild$")
		cmd.Env = append(os.Environ(), "SAGE_JOURNAL_APPENDER="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the child has appended for a while, then kill it without warning.
		buf := make([]byte, 64)
		if _, err := stdout.Read(buf); err != nil {
			t.Fatalf("round %d: child said nothing: %v", round, err)
		}
		time.Sleep(30 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()

		j, err := OpenJournal(dir, JournalOptions{MaxBytes: 1 << 30})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		var want uint64 = 1
		if err := j.Read(0, func(e Event) bool {
			if e.Seq != want {
				t.Fatalf("round %d: seq %d, want %d", round, e.Seq, want)
			}
			want++
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if st := j.Stats(); st.LastSeq != want-1 || st.LastSeq == 0 {
			t.Fatalf("round %d: stats %+v, read up to %d", round, st, want-1)
		}
		t.Logf("round %d: %d records intact, %d torn bytes truncated", round, want-1, j.Stats().TornBytes)
		j.Close()
	}
}

// TestJournalAppenderChild is the process TestJournalKill9 kills: it appends batches forever.
func TestJournalAppenderChild(t *testing.T) {
	dir := os.Getenv("SAGE_JOURNAL_APPENDER")
	if dir == "" {
		t.Skip("run by TestJournalKill9")
	}
	j, err := OpenJournal(dir, JournalOptions{MaxBytes: 1 << 30, SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("started\n")
	for i := 0; ; i++ {
		if err := j.Append(mkEvents(1+i%7, "k"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestJournalConcurrentReadAppend(t *testing.T) {
	j, err := OpenJournal(t.TempDir(), JournalOptions{MaxBytes: 32 << 10, SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			if err := j.Append(mkEvents(3, strconv.Itoa(i))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Go(func() {
		for range 50 {
			var last uint64
			if err := j.Read(0, func(e Event) bool {
				if e.Seq <= last {
					t.Errorf("out of order: %d after %d", e.Seq, last)
				}
				last = e.Seq
				return true
			}); err != nil {
				t.Error(err)
			}
			if last > 0 {
				_ = j.Acknowledge(last)
			}
		}
	})
	wg.Wait()
	if st := j.Stats(); st.LastSeq != 600 || st.Acked == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRealListener opens a TCP listener and sees it, with this process's name, in the listeners kind.
func TestRealListener(t *testing.T) {
	mo := newMonitor(t, Config{Kinds: []string{"listeners"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key := "tcp " + ln.Addr().String()
	evs := eventsFor(mo.run().Events, "listeners", key)
	comm, _ := os.ReadFile("/proc/self/comm")
	if len(evs) != 1 || evs[0].Action != Added || evs[0].After["process"] != strings.TrimSpace(string(comm)) {
		t.Fatalf("listener %s: %+v", key, evs)
	}
	ln.Close()
	if evs := eventsFor(mo.run().Events, "listeners", key); len(evs) != 1 || evs[0].Action != Removed {
		t.Fatalf("closed listener %s: %+v", key, evs)
	}
}
