package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BuildSage builds the real sage binary once per test process and returns its path. Linking the
// full binary takes tens of seconds on a busy machine, and a package's tests would otherwise link it
// once per test. The binary sits in a directory named after the package, replaced by rename, so
// that repeated runs reuse one file instead of filling the temporary directory.
func BuildSage(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			buildErr = err
			return
		}
		sum := sha256.Sum256([]byte(wd))
		dir := filepath.Join(os.TempDir(), "sage-test-"+hex.EncodeToString(sum[:6]))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		tmp := filepath.Join(dir, fmt.Sprintf("sage.%d", os.Getpid()))
		out, err := exec.Command("go", "build", "-o", tmp, "github.com/serversage/sage/cmd/sage").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		built = filepath.Join(dir, "sage")
		buildErr = os.Rename(tmp, built)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// FreeAddr returns a loopback address with a port free at the time of the call.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Output collects a child process's output, which exec copies from another goroutine.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// WaitFor waits up to d for the output to contain sub, and reports whether it did. Output reaches
// the buffer through a pipe copied by another goroutine, so a line written just before the
// process became ready may arrive a moment after.
func (o *Output) WaitFor(sub string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(o.String(), sub) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Start runs a program until the test ends, stopping it with SIGINT (and failing the test if it
// does not stop within 15 s), and waits up to a minute until readyURL answers 200. The program's
// output is logged when the test fails.
func Start(t testing.TB, readyURL, name string, args ...string) (*exec.Cmd, *Output) {
	t.Helper()
	cmd := exec.Command(name, args...)
	out := &Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s did not stop on SIGINT", filepath.Base(name))
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd, out
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not ready at %s: %v\n%s", name, readyURL, err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
