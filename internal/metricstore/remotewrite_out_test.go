package metricstore

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/serversage/sage/internal/testenv"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// receiver is a real prometheus with the remote-write receiver on, which the test can stop and
// restart on the same address and data directory.
type receiver struct {
	t         *testing.T
	bin, addr string
	dir       string
	cmd       *exec.Cmd
	logs      *lockedBuffer
}

func (r *receiver) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--config.file="+filepath.Join(r.dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(r.dir, "data"), "--web.listen-address="+r.addr,
		"--web.enable-remote-write-receiver", "--log.level=warn")
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + r.addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("prometheus not ready: %v\n%s", err, r.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *receiver) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
	r.cmd = nil
}

// count asks the receiver how many samples of the series it holds.
func (r *receiver) count(query string) float64 {
	resp, err := http.Get("http://" + r.addr + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil || len(body.Data.Result) != 1 {
		return -1
	}
	f, _ := strconv.ParseFloat(body.Data.Result[0].Value[1].(string), 64)
	return f
}

// TestRemoteWriteOut has the store forward samples to a real prometheus, stops that receiver,
// keeps appending, restarts it, and checks that every sample arrived, with the external labels.
func TestRemoteWriteOut(t *testing.T) {
	bin := testenv.LookPath(t, "prometheus", "prometheus")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := &receiver{t: t, bin: bin, addr: addr, dir: t.TempDir(), logs: &lockedBuffer{}}
	if err := os.WriteFile(filepath.Join(r.dir, "prometheus.yml"), []byte("global: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start()
	defer func() {
		r.stop()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", r.logs.String())
		}
	}()

	s := openStore(t, Options{
		ExternalLabels: map[string]string{"hub": "test"},
		RemoteWrite:    []RemoteWrite{{URL: "http://" + addr + "/api/v1/write", Name: "receiver"}},
	})
	appendNow := func(ls labels.Labels, n int, from int) {
		for i := range n {
			app := s.Appender(context.Background())
			if _, err := app.Append(0, ls, time.Now().UnixMilli(), float64(from+i)); err != nil {
				t.Fatal(err)
			}
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCount := func(query string, want float64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for got := r.count(query); got != want; got = r.count(query) {
			if time.Now().After(deadline) {
				t.Fatalf("receiver holds %v samples, want %v", got, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// The queue sends only samples newer than its own start, which follows Open by a moment (as in
	// Prometheus): a first series shows when it runs.
	warmup := labels.FromStrings("__name__", "warmup")
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; r.count(`count_over_time(warmup[10m])`) < 1; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the remote-write queue sent nothing")
		}
		appendNow(warmup, 1, i)
	}

	t.Logf("queue running after %s", time.Since(deadline.Add(-30*time.Second)))
	ls := labels.FromStrings("__name__", "forwarded_total", "host", "web1")
	query := `count_over_time(forwarded_total{hub="test",host="web1"}[10m])`
	appendNow(ls, 10, 0)
	waitCount(query, 10)

	// The receiver goes away; samples appended meanwhile wait in the queue and the WAL.
	r.stop()
	appendNow(ls, 10, 10)
	time.Sleep(time.Second) // let the queue fail and back off
	r.start()
	restarted := time.Now()
	waitCount(query, 20)
	t.Logf("backlog delivered %s after the receiver came back", time.Since(restarted))

	if !strings.Contains(s.Config().String(), "remote_write") {
		t.Errorf("the configuration does not show the remote write:\n%s", s.Config().String())
	}
}

func TestRemoteWriteOptions(t *testing.T) {
	tests := []struct {
		name string
		rw   RemoteWrite
		want string
	}{
		{"no scheme", RemoteWrite{URL: "receiver:9090/api/v1/write"}, "http(s)://"},
		{"both auths", RemoteWrite{URL: "http://r/w", Username: "u", PasswordFile: "/p", BearerTokenFile: "/t"}, "exclusive"},
		{"version", RemoteWrite{URL: "http://r/w", Version: "3"}, "neither 1.0 nor 2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			s, err := Open(Options{Dir: dir, RemoteWrite: []RemoteWrite{tt.rw}})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %q, want %q", err, tt.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("a refused configuration created the data directory: %v", err)
			}
		})
	}
	t.Run("secrets by file are not shown", func(t *testing.T) {
		s := openStore(t, Options{RemoteWrite: []RemoteWrite{
			{URL: "http://127.0.0.1:1/w", Username: "hub", PasswordFile: "/etc/sage/rw-password", Version: "2.0"},
		}})
		cfg := s.Config().String()
		for _, want := range []string{"password_file: /etc/sage/rw-password", "protobuf_message: io.prometheus.write.v2.Request"} {
			if !strings.Contains(cfg, want) {
				t.Errorf("configuration lacks %q:\n%s", want, cfg)
			}
		}
	})
}
