package flowcontrol

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func acquired(t *testing.T, l *Limiter, key string) *Seat {
	t.Helper()
	s, err := l.Acquire(context.Background(), key)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return s
}

// waitFor starts Acquire for key in the background and returns its outcome.
func waitFor(l *Limiter, key string, ctx context.Context) chan error {
	done := make(chan error, 1)
	go func() {
		s, err := l.Acquire(ctx, key)
		if err == nil {
			s.Done()
		}
		done <- err
	}()
	return done
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A flood holds every seat and queues more; a caller with nothing in gets the
// next seat that frees up, before the flood's own waiters.
func TestTheNextSeatGoesToTheFlowHoldingFewest(t *testing.T) {
	l := New(Config{Seats: 2, QueueLength: 8, MaxWaiting: 64, MaxWait: time.Minute})
	held := []*Seat{acquired(t, l, "flood"), acquired(t, l, "flood")}
	got := make(chan string, 8)
	seats := make(chan *Seat, 8)
	acquire := func(key string) {
		s, err := l.Acquire(context.Background(), key)
		if err != nil {
			t.Error(err)
			return
		}
		got <- key
		seats <- s
	}
	for range 3 {
		go acquire("flood")
	}
	eventually(t, "the flood's waiters queue", func() bool { return l.Stats().Waiting == 3 })
	go acquire("light")
	eventually(t, "the light caller queues", func() bool { return l.Stats().Waiting == 4 })
	held[0].Done()
	if first := <-got; first != "light" {
		t.Fatalf("the first freed seat went to %s, want the caller holding none", first)
	}
	held[1].Done()
	for range 3 {
		if next := <-got; next != "flood" {
			t.Fatalf("then %s", next)
		}
		(<-seats).Done() // the light caller's seat, then the flood's
	}
	(<-seats).Done()
	if s := l.Stats(); s != (Stats{}) {
		t.Fatalf("everything released: %+v", s)
	}
}

func TestAFlowIsShedFromItsOwnQueueOnly(t *testing.T) {
	l := New(Config{Seats: 1, QueueLength: 2, MaxWaiting: 64, MaxWait: time.Minute})
	held := acquired(t, l, "flood")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w1, w2 := waitFor(l, "flood", ctx), waitFor(l, "flood", ctx)
	eventually(t, "two waiters", func() bool { return l.Stats().Waiting == 2 })
	if _, err := l.Acquire(ctx, "flood"); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("a third waiter of the same flow: %v, want ErrQueueFull", err)
	}
	other := waitFor(l, "other", ctx)
	eventually(t, "another flow still queues", func() bool { return l.Stats().Waiting == 3 })
	held.Done()
	if err := <-other; err != nil {
		t.Fatalf("the other flow: %v", err)
	}
	for _, w := range []chan error{w1, w2} {
		if err := <-w; err != nil {
			t.Fatal(err)
		}
	}
	if s := l.Stats(); s != (Stats{}) {
		t.Fatalf("everything released: %+v", s)
	}
}

func TestMaxWaitingBoundsAllQueues(t *testing.T) {
	l := New(Config{Seats: 1, QueueLength: 8, MaxWaiting: 2, MaxWait: time.Minute})
	held := acquired(t, l, "a")
	ctx, cancel := context.WithCancel(context.Background())
	w1, w2 := waitFor(l, "b", ctx), waitFor(l, "c", ctx)
	eventually(t, "two waiters", func() bool { return l.Stats().Waiting == 2 })
	if _, err := l.Acquire(ctx, "d"); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("beyond MaxWaiting: %v", err)
	}
	cancel()
	for _, w := range []chan error{w1, w2} {
		if err := <-w; !errors.Is(err, context.Canceled) {
			t.Fatalf("a waiter whose client left: %v", err)
		}
	}
	held.Done()
	held.Done() // only the first counts
	if s := l.Stats(); s != (Stats{}) {
		t.Fatalf("everything released: %+v", s)
	}
}

func TestWaitingIsBounded(t *testing.T) {
	l := New(Config{Seats: 1, QueueLength: 8, MaxWaiting: 8, MaxWait: 20 * time.Millisecond})
	held := acquired(t, l, "a")
	defer held.Done()
	start := time.Now()
	if _, err := l.Acquire(context.Background(), "b"); !errors.Is(err, ErrWaitedTooLong) {
		t.Fatalf("%v", err)
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Fatalf("gave up after %s", took)
	}
	if s := l.Stats(); s.Waiting != 0 || s.Flows != 1 {
		t.Fatalf("the waiter that gave up is gone: %+v", s)
	}
}

// Overloaded, the limiter sheds the requests of flows that already have one in,
// and still serves a caller that sends one at a time; alone, a caller is never
// shed for it (there is no one to protect).
func TestOverloadShedsOnlyFlowsWithRequestsIn(t *testing.T) {
	var overloaded atomic.Bool
	l := New(Config{Seats: 8, QueueLength: 8, MaxWaiting: 64, MaxWait: time.Minute, Overloaded: overloaded.Load})
	overloaded.Store(true)
	var flood []*Seat
	for range 4 {
		flood = append(flood, acquired(t, l, "flood")) // alone: never shed
	}
	light := acquired(t, l, "light")
	if _, err := l.Acquire(context.Background(), "flood"); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("a flow with requests in, overloaded: %v", err)
	}
	if _, err := l.Acquire(context.Background(), "light"); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("the light flow's second request at once, overloaded: %v", err)
	}
	light.Done()
	light = acquired(t, l, "light") // one at a time: served
	overloaded.Store(false)
	extra := acquired(t, l, "flood") // not overloaded: served
	for _, s := range append(flood, light, extra) {
		s.Done()
	}
	if s := l.Stats(); s != (Stats{}) {
		t.Fatalf("everything done: %+v", s)
	}
}

// Release gives the seat back early; the request stays in until Done.
func TestReleaseKeepsTheRequestIn(t *testing.T) {
	l := New(Config{Seats: 1, QueueLength: 8, MaxWaiting: 8, MaxWait: time.Minute})
	s := acquired(t, l, "a")
	s.Release()
	if st := l.Stats(); st.Busy != 0 || st.Flows != 1 {
		t.Fatalf("released, not done: %+v", st)
	}
	other := acquired(t, l, "b") // the seat is free
	other.Done()
	s.Done()
	s.Done()
	if st := l.Stats(); st != (Stats{}) {
		t.Fatalf("done: %+v", st)
	}
}

// A flow forgotten is kept spare once, however often its seats are released and
// done, and comes back empty for the next caller: a spare flow handed to two
// callers, or carrying a seat or a request over, would merge their shares.
func TestASpareFlowServesOneCallerAndStartsEmpty(t *testing.T) {
	l := New(Config{Seats: 1, QueueLength: 8, MaxWaiting: 8, MaxWait: time.Minute})
	s := acquired(t, l, "a")
	s.Release()
	s.Done()
	s.Release()
	s.Done()
	if len(l.spare) != 1 {
		t.Fatalf("spare flows after one caller's request: %d, want 1", len(l.spare))
	}
	b := acquired(t, l, "b") // a's flow, reused
	if f := l.flows["b"]; f.key != "b" || f.held != 1 || f.in != 1 || len(f.queue) != 0 {
		t.Fatalf("b's flow: %+v", f)
	}
	waited := waitFor(l, "c", context.Background()) // a new flow: none spare
	eventually(t, "c to queue", func() bool { return l.Stats().Waiting == 1 })
	if l.flows["c"] == l.flows["b"] {
		t.Fatal("b and c share a flow")
	}
	b.Done()
	if err := <-waited; err != nil {
		t.Fatalf("c: %v", err)
	}
	if st := l.Stats(); st != (Stats{}) || len(l.spare) != 2 {
		t.Fatalf("done: %+v, %d spare", st, len(l.spare))
	}
}

func TestBudget(t *testing.T) {
	b := NewBudget(6, time.Minute, 3, 2) // one every 10 s, bursts of 3, two keys
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := b.Allow("a", now); !ok {
			t.Fatalf("burst event %d refused", i)
		}
	}
	ok, wait := b.Allow("a", now)
	if ok || wait != 10*time.Second {
		t.Fatalf("beyond the burst: %v, retry after %s", ok, wait)
	}
	if ok, _ := b.Allow("b", now); !ok {
		t.Fatal("another key has its own budget")
	}
	if ok, _ := b.Allow("c", now); ok {
		t.Fatal("a third key beyond MaxKeys, while the others are in debt")
	}
	if ok, _ := b.Allow("a", now.Add(10*time.Second)); !ok {
		t.Fatal("one event back after an interval")
	}
	if ok, _ := b.Allow("c", now.Add(time.Hour)); !ok {
		t.Fatal("once the others are full again, they are forgotten and a new key fits")
	}
}
