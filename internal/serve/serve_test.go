package serve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// A server told to stop keeps answering the clients a proxy still sends it, each
// on a new connection as kube-proxy's are, for as long as they keep coming: the
// proxy hears of the pod's deletion some time after the pod does. Once they stop
// coming, it stops soon after, and no longer listens.
func TestAServerStoppingServesTheConnectionsThatStillArrive(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String() + "/"
	ctx, cancel := context.WithCancel(context.Background())
	ready := &Readiness{}
	ready.MarkSynced()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Readiness: ready, HTTP: []HTTP{{Listener: l, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		})}}})
	}()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() error {
		resp, err := client.Get(addr)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return errors.New(resp.Status)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("before stopping: %v", err)
	}

	// The proxy goes on sending clients for 600 ms after the server was told to stop.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		answered int
		failures []error
	)
	stopLoad := make(chan struct{})
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			err := get()
			mu.Lock()
			if err != nil {
				failures = append(failures, err)
			} else {
				answered++
			}
			mu.Unlock()
		}
	})
	time.Sleep(100 * time.Millisecond)
	cancel()
	time.Sleep(600 * time.Millisecond)
	if ready.Ready() == nil {
		t.Error("still ready once told to stop")
	}
	close(stopLoad)
	wg.Wait()
	loadStopped := time.Now()
	if len(failures) > 0 || answered < 20 {
		t.Fatalf("while stopping: %d answered, failures %v", answered, failures)
	}

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(DefaultDrain + ShutdownGrace):
		t.Fatal("still serving long after the clients stopped coming")
	}
	if waited := time.Since(loadStopped); waited > 3*drainIdle {
		t.Errorf("stopped %v after the last client, want about %v", waited, drainIdle)
	}
	if err := get(); err == nil {
		t.Error("still answering once stopped")
	}
}
