package serve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stoppingServer is a server under Run with a load that opens a connection per
// request, as kube-proxy's clients do.
type stoppingServer struct {
	addr   string
	ready  *Readiness
	cancel context.CancelFunc
	done   chan error
	client *http.Client

	answered atomic.Int64
	mu       sync.Mutex
	failures []error
	stopLoad chan struct{}
	load     sync.WaitGroup
}

func startStoppingServer(t *testing.T, drain time.Duration) *stoppingServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stoppingServer{addr: "http://" + l.Addr().String() + "/", ready: &Readiness{}, cancel: cancel, done: make(chan error, 1),
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}, stopLoad: make(chan struct{})}
	t.Cleanup(func() { s.stop(); cancel() })
	s.ready.MarkSynced()
	go func() {
		s.done <- Run(ctx, Config{Readiness: s.ready, Drain: drain, HTTP: []HTTP{{Listener: l, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		})}}})
	}()
	if err := s.get(); err != nil {
		t.Fatalf("before stopping: %v", err)
	}
	s.load.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stopLoad:
				return
			case <-tick.C:
			}
			if err := s.get(); err != nil {
				s.mu.Lock()
				s.failures = append(s.failures, err)
				s.mu.Unlock()
			} else {
				s.answered.Add(1)
			}
		}
	})
	return s
}

func (s *stoppingServer) get() error {
	resp, err := s.client.Get(s.addr)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return errors.New(resp.Status)
	}
	return nil
}

// stop ends the load (idempotent) and returns its failures.
func (s *stoppingServer) stop() []error {
	select {
	case <-s.stopLoad:
	default:
		close(s.stopLoad)
	}
	s.load.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures
}

// A server told to stop keeps answering the clients a proxy still sends it, for
// as long as they keep coming: the proxy hears of the pod's deletion some time
// after the pod does. Once they stop coming, it stops soon after, and no longer
// listens.
func TestAServerStoppingServesTheConnectionsThatStillArrive(t *testing.T) {
	s := startStoppingServer(t, DefaultDrain)
	s.cancel()
	from := s.answered.Load()
	deadline := time.Now().Add(DefaultDrain / 2)
	for s.answered.Load() < from+20 && time.Now().Before(deadline) { // the proxy goes on sending clients
		time.Sleep(10 * time.Millisecond)
	}
	failures := s.stop()
	loadStopped := time.Now()
	if got := s.answered.Load() - from; len(failures) > 0 || got < 20 {
		t.Fatalf("while stopping: %d answered, failures %v", got, failures)
	}
	if s.ready.Ready() == nil {
		t.Error("still ready once told to stop")
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(DefaultDrain + ShutdownGrace):
		t.Fatal("still serving long after the clients stopped coming")
	}
	if waited := time.Since(loadStopped); waited > DefaultDrain/2 {
		t.Errorf("stopped %v after the last client, want about %v", waited, drainIdle)
	}
	if err := s.get(); err == nil {
		t.Error("still answering once stopped")
	}
}

// Clients that never stop coming (a proxy that never hears, a caller that keeps
// connecting) hold a stopping server no longer than its Drain.
func TestAServerStoppingStopsAtItsDrainWhateverStillArrives(t *testing.T) {
	const drain = 1500 * time.Millisecond
	s := startStoppingServer(t, drain)
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(drain + 3*time.Second):
		t.Fatal("still serving past its drain while clients kept coming")
	}
	s.stop()
	if s.answered.Load() < 2 {
		t.Errorf("%d answered while draining: the load did not run", s.answered.Load())
	}
	if err := s.get(); err == nil {
		t.Error("still answering once stopped")
	}
}
