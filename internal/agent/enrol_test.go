package agent

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestEnrolHook: enrolment runs in the background once the agent listens, with the bound address;
// /metrics is served while it is still waiting for the hub; a reload request enrols again; and
// shutdown cancels an enrolment in progress instead of waiting for the hub.
func TestEnrolHook(t *testing.T) {
	calls := make(chan net.Addr, 4)
	release := make(chan struct{})
	cancelled := make(chan struct{}, 4)
	opts := Options{Listen: "127.0.0.1:0", StateDir: t.TempDir(),
		Enrol: func(ctx context.Context, listening net.Addr) error {
			calls <- listening
			select {
			case <-release: // the hub answered
				return nil
			case <-ctx.Done(): // the hub never answered
				cancelled <- struct{}{}
				return ctx.Err()
			}
		}}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	reload := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, reload, ready) }()
	addr := <-ready

	wait := func(what string) net.Addr {
		t.Helper()
		select {
		case got := <-calls:
			return got
		case <-time.After(10 * time.Second):
			t.Fatalf("no enrolment %s", what)
			return nil
		}
	}
	if got := wait("at start"); got.String() != addr.String() {
		t.Errorf("enrolled with address %v, listening on %v", got, addr)
	}
	// The first enrolment is still waiting for the hub: scrapes must not.
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/metrics while enrolling: %d", resp.StatusCode)
	}
	release <- struct{}{}

	reload <- struct{}{}
	wait("after a reload request")

	cancel() // the second enrolment is still waiting: shutdown must cancel it
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not shut down while enrolling")
	}
	select {
	case <-cancelled:
	default:
		t.Error("the enrolment in progress was not cancelled at shutdown")
	}
}
