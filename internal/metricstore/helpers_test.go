package metricstore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testCommand re-runs this test binary on one test, with extra environment, for tests whose other
// half must be a separate process.
func testCommand(t *testing.T, run string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// waitForLine reads r until a line starts with prefix and returns the rest of it.
func waitForLine(r io.Reader, prefix string, timeout time.Duration) (string, error) {
	found := make(chan string, 1)
	failed := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		var seen []string
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				found <- rest
				_, _ = io.Copy(io.Discard, r)
				return
			}
			seen = append(seen, sc.Text())
		}
		failed <- fmt.Errorf("output ended without %q: %v", prefix, seen)
	}()
	select {
	case s := <-found:
		return s, nil
	case err := <-failed:
		return "", err
	case <-time.After(timeout):
		return "", errors.New("timed out waiting for " + prefix)
	}
}

func mustParseInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
