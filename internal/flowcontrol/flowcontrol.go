// Package flowcontrol shares a server's capacity fairly between its callers, after
// Kubernetes' API Priority and Fairness: a Limiter serves a few requests at once
// (seats), queues the others per flow — a client_id, or the source address of a
// request that has proven nothing — and gives each seat that frees up to the
// waiting flow that holds the fewest seats. So a caller that floods waits behind
// itself and is shed from its own queue, while a caller that sends little is
// served almost at once, whatever the flood.
//
// It also knows when the process as a whole is behind (an Overloaded func, the Go
// scheduler's latency): then, while more than one flow has requests in, it sheds
// the requests of the flows that already have one in, and only those, so that a
// caller that sends one request at a time is still served. A request is in from Acquire
// to Done, seated or not: a flood of cheap requests holds seats only for moments,
// but its requests are in while they wait for the CPU to write their answers.
// What a server answers a shed request, and when, is its own business.
package flowcontrol

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Errors of Acquire: why a request was shed.
var (
	// ErrQueueFull: the flow's queue, or all queues together, are full.
	ErrQueueFull = errors.New("the caller's queue is full")
	// ErrWaitedTooLong: no seat freed up for it within MaxWait.
	ErrWaitedTooLong = errors.New("no seat freed up in time")
	// ErrOverloaded: the process is behind, and the flow has more requests in than its share.
	ErrOverloaded = errors.New("the server is overloaded and the caller has more than its share of requests in")
)

// Config sizes a Limiter.
type Config struct {
	// Seats is how many requests are served at once.
	Seats int
	// QueueLength is how many requests one flow may have waiting.
	QueueLength int
	// MaxWaiting bounds the requests waiting over all flows (memory).
	MaxWaiting int
	// MaxWait is the longest a request waits for a seat.
	MaxWait time.Duration
	// Overloaded reports whether the process is behind; nil: never.
	Overloaded func() bool
}

// Limiter admits requests by flow. The zero value is not usable: New.
type Limiter struct {
	cfg Config

	mu      sync.Mutex
	busy    int // seats held
	waiting int // requests queued, over all flows
	in      int // requests in (Acquire to Done), over all flows
	flows   map[string]*flow
	// ready lists the flows with waiters, in the order they began to wait: the
	// tie-break between flows that hold as few seats.
	ready []*flow
	// spare are flows forgotten, for the next flows to come in: a caller whose
	// requests come one at a time makes and forgets its flow with every one
	// (make bench: an allocation per request).
	spare []*flow
}

// maxSpareFlows bounds the flows kept spare.
const maxSpareFlows = 64

// flow is one caller's share: the seats it holds, its queue, and its requests in.
// It exists while it has a request in.
type flow struct {
	key   string
	held  int
	in    int
	queue []*waiter
}

type waiter struct {
	granted chan struct{} // closed when a seat is handed over
	done    bool          // granted or gone: no longer in the queue
}

// New returns a Limiter with cfg (Seats, QueueLength and MaxWaiting at least 1).
func New(cfg Config) *Limiter {
	cfg.Seats, cfg.QueueLength, cfg.MaxWaiting = max(cfg.Seats, 1), max(cfg.QueueLength, 1), max(cfg.MaxWaiting, 1)
	return &Limiter{cfg: cfg, flows: map[string]*flow{}}
}

// Seat is a request's place in the limiter: a seat, from Acquire until Release,
// and the request's presence, until Done. Both may be called more than once
// (only the first counts), so that a request may give its seat up early (before
// it waits on I/O) and still call both in defers.
type Seat struct {
	l *Limiter
	f *flow
	// released and done say which of the two has counted; guarded by l.mu.
	released, done bool
}

// Release gives the seat back to the limiter; the request is still in.
func (s *Seat) Release() {
	if s == nil {
		return
	}
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	s.releaseLocked()
}

// Done says the request is answered: its seat is given back if it still holds
// it. Both under one lock: the end of every request takes the limiter's lock
// once.
func (s *Seat) Done() {
	if s == nil {
		return
	}
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	s.releaseLocked()
	if !s.done {
		s.done = true
		s.l.leave(s.f)
	}
}

func (s *Seat) releaseLocked() {
	if !s.released {
		s.released = true
		s.l.release(s.f)
	}
}

// Acquire returns a seat for the flow key, waiting for one (in the flow's queue)
// at most MaxWait, or until ctx ends. The error says why the request was shed.
func (l *Limiter) Acquire(ctx context.Context, key string) (*Seat, error) {
	l.mu.Lock()
	f := l.flows[key]
	if f == nil {
		f = l.newFlow(key)
		l.flows[key] = f
	}
	f.in++
	l.in++
	// While the process is behind, a caller with a request in already is over its
	// share, unless it is the only one: a caller that sends one request at a time
	// is always served, and one that sends many at once backs off first.
	overShare := len(l.flows) > 1 && f.in > 1
	switch {
	case overShare && l.cfg.Overloaded != nil && l.cfg.Overloaded():
		l.leave(f)
		l.mu.Unlock()
		return nil, ErrOverloaded
	case l.busy < l.cfg.Seats && len(l.ready) == 0:
		l.busy++
		f.held++
		l.mu.Unlock()
		return &Seat{l: l, f: f}, nil
	case len(f.queue) >= l.cfg.QueueLength || l.waiting >= l.cfg.MaxWaiting:
		l.leave(f)
		l.mu.Unlock()
		return nil, ErrQueueFull
	}
	w := &waiter{granted: make(chan struct{})}
	if len(f.queue) == 0 {
		l.ready = append(l.ready, f)
	}
	f.queue = append(f.queue, w)
	l.waiting++
	l.mu.Unlock()

	timer := time.NewTimer(l.cfg.MaxWait)
	defer timer.Stop()
	var err error
	select {
	case <-w.granted:
		return &Seat{l: l, f: f}, nil
	case <-timer.C:
		err = ErrWaitedTooLong
	case <-ctx.Done():
		err = ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.done { // granted while the timer fired: keep the seat rather than lose it
		return &Seat{l: l, f: f}, nil
	}
	l.dequeue(f, w)
	l.leave(f)
	return nil, err
}

// leave counts a request of f out.
func (l *Limiter) leave(f *flow) {
	f.in--
	l.in--
	l.forget(f)
}

// release frees a seat of f and hands it to the waiting flow that holds the
// fewest seats (the longest waiting among those). l.mu is held.
func (l *Limiter) release(f *flow) {
	f.held--
	l.busy--
	l.forget(f)
	for l.busy < l.cfg.Seats && len(l.ready) > 0 {
		next := 0
		for i, candidate := range l.ready {
			if candidate.held < l.ready[next].held {
				next = i
			}
		}
		g := l.ready[next]
		w := g.queue[0]
		g.queue = g.queue[1:]
		if len(g.queue) == 0 {
			l.ready = append(l.ready[:next], l.ready[next+1:]...)
		} else {
			// Served once: to the back of the flows holding as many seats.
			l.ready = append(append(l.ready[:next:next], l.ready[next+1:]...), g)
		}
		l.waiting--
		w.done = true
		g.held++
		l.busy++
		close(w.granted)
	}
}

// dequeue removes a waiter that gave up.
func (l *Limiter) dequeue(f *flow, w *waiter) {
	for i, q := range f.queue {
		if q == w {
			f.queue = append(f.queue[:i], f.queue[i+1:]...)
			break
		}
	}
	w.done = true
	l.waiting--
	if len(f.queue) == 0 {
		for i, r := range l.ready {
			if r == f {
				l.ready = append(l.ready[:i], l.ready[i+1:]...)
				break
			}
		}
	}
	l.forget(f)
}

// forget drops a flow that has no request in, so that the table holds only flows
// with requests in (bounded by the requests being served).
func (l *Limiter) forget(f *flow) {
	if f.in == 0 {
		delete(l.flows, f.key)
		if len(l.spare) < maxSpareFlows {
			// No request of it is in: no seat held, no waiter queued, nothing
			// refers to it any more, and nothing will forget it again (a
			// request leaves once, after its seat is released).
			*f = flow{} // its queue's array too: it may still point at waiters gone
			l.spare = append(l.spare, f)
		}
	}
}

// newFlow is a flow for key, a spare one if there is one.
func (l *Limiter) newFlow(key string) *flow {
	n := len(l.spare)
	if n == 0 {
		return &flow{key: key}
	}
	f := l.spare[n-1]
	l.spare = l.spare[:n-1]
	f.key = key
	return f
}

// Stats is what a Limiter holds now, for metrics.
type Stats struct {
	Busy, Waiting, Flows int
}

// Stats returns the seats held, the requests waiting and the flows with requests in.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Busy: l.busy, Waiting: l.waiting, Flows: len(l.flows)}
}

// Budget allows each key a rate of events with bursts, in memory (the generic
// cell rate algorithm: one timestamp per key). It holds only the keys that are
// not full again; beyond MaxKeys of those, a key it does not hold is refused, so
// that a caller spraying keys cannot grow it.
type Budget struct {
	interval  time.Duration // between events at the sustained rate
	tolerance time.Duration // how far ahead of now a key's debt may run: a burst
	maxKeys   int

	mu  sync.Mutex
	tat map[string]time.Time // each key's theoretical arrival time
}

// NewBudget allows events events per per, bursts of burst, for at most maxKeys keys at once.
func NewBudget(events int, per time.Duration, burst, maxKeys int) *Budget {
	interval := per / time.Duration(max(events, 1))
	return &Budget{interval: interval, tolerance: interval * time.Duration(max(burst, 1)), maxKeys: max(maxKeys, 1), tat: map[string]time.Time{}}
}

// Allow takes one event from key's budget at now, or says how long until one is left.
func (b *Budget) Allow(key string, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tat, held := b.tat[key]
	if !held {
		if len(b.tat) >= b.maxKeys {
			b.sweep(now)
		}
		if len(b.tat) >= b.maxKeys {
			return false, b.interval
		}
	}
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(b.interval)
	if wait := next.Sub(now) - b.tolerance; wait > 0 {
		return false, wait
	}
	b.tat[key] = next
	return true, 0
}

// sweep forgets the keys whose budget is full again.
func (b *Budget) sweep(now time.Time) {
	for key, tat := range b.tat {
		if !tat.After(now) {
			delete(b.tat, key)
		}
	}
}
