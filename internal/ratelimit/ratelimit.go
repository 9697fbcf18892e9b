// Package ratelimit counts each credential's requests per API at the edge, in
// memory: a generic cell rate algorithm (GCRA) per budget, whose whole state is
// one time (the theoretical arrival time of the next request, TAT). A budget of
// Requests per Per lets a request through when TAT - now ≤ (Burst-1)·T, with
// T = Per/Requests, and moves TAT on by T.
//
// A budget remembers the interval it counted in: when a limit is edited, the
// requests already counted are kept, at the new interval, so a raised limit
// applies to the very next request.
//
// Several authorizer replicas share a limit without talking to each other: each
// enforces its share, the limit divided by the ready replicas (SetReplicas). A
// client spread evenly over the replicas gets the limit; one that reaches only
// some of them gets less (at worst its share on one replica), and never more
// than the limit's rate; bursts add up to at most the burst rounded up to a
// multiple of the replicas.
//
// Counting allocates nothing once a budget exists; memory is bounded: idle
// budgets (TAT in the past, so the same as absent) are dropped by Sweep, at most
// maxBudgets are kept, and at most maxPerNamespace for the credentials of one
// namespace. A new budget that finds no room is refused (429), never let
// through uncounted: the gate fails closed, and for the namespace that filled
// its share only.
package ratelimit

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/latchkey-dev/latchkey/internal/apirules"
)

// Key names one budget: a credential (an APIKey's, OAuthClient's or OAuthGrant's
// UID) on an API, for the API's own budget (Rule APIBudget) or a rule's (its
// index.Rule.ID).
type Key struct {
	Credential types.UID
	API        types.UID
	Rule       int32
}

// APIBudget is the Rule of an API's own budget.
const APIBudget = -1

const shards = 64

// sweepEvery bounds how often a full shard is swept for a new budget.
const sweepEvery = time.Second

// Limiter holds the budgets. The zero value is not usable: New.
type Limiter struct {
	seed                    maphash.Seed
	maxPerShard, maxPerNSPS int // budgets per shard, and per namespace per shard
	replicas                atomic.Int64
	shards                  [shards]shard
	refusedCount            atomic.Int64
}

type shard struct {
	mu        sync.Mutex
	budgets   map[Key]state
	namespace map[string]int // budgets per credential namespace
	lastSweep int64
	_         [24]byte // keeps shards' locks on separate cache lines
}

// state is one budget's: the TAT (Unix nanoseconds), the interval it was
// counted in (so that a limit edited, or a replica count changed, keeps the
// number of requests counted, not the time they stand for), and the namespace
// of its credential (whose count it is in).
type state struct {
	tat, interval int64
	namespace     string
}

// New is a limiter that keeps at most maxBudgets budgets, and at most
// maxPerNamespace of the credentials of one namespace: a tenant that creates
// credentials and APIs by the thousand fills its own share, never another's.
func New(maxBudgets, maxPerNamespace int) *Limiter {
	perShard := max(1, maxBudgets/shards)
	l := &Limiter{seed: maphash.MakeSeed(), maxPerShard: perShard,
		maxPerNSPS: max(1, min(perShard, maxPerNamespace/shards))}
	l.replicas.Store(1)
	for i := range l.shards {
		l.shards[i].budgets = map[Key]state{}
		l.shards[i].namespace = map[string]int{}
	}
	return l
}

// SetReplicas sets how many replicas share each limit (at least 1).
func (l *Limiter) SetReplicas(n int) { l.replicas.Store(int64(max(1, n))) }

// Replicas is how many replicas share each limit.
func (l *Limiter) Replicas() int { return int(l.replicas.Load()) }

// Budget is one budget a request spends from: its key and its limit.
type Budget struct {
	Key   Key
	Limit *apirules.Limit
}

// Result is one request's verdict on one budget.
type Result struct {
	Allowed bool
	// Remaining is how many more requests this replica lets through now on the
	// budget (its share: a client that reaches every replica has about as many
	// on each).
	Remaining int64
	// Reset is when the budget is whole again; RetryAfter, for a refused request,
	// when the next one will be let through.
	Reset, RetryAfter time.Duration
}

// Take spends one request from every budget at now, or from none: the request
// is let through only when each allows it (a refused request spends nothing, so
// a client retrying a route it spent keeps its other budgets). Every budget must
// be of the same credential, whose namespace is namespace, and of its own key;
// there are at most four. out gets each budget's result; noRoom reports a
// refusal for want of room for a new budget.
func (l *Limiter) Take(now time.Time, namespace string, budgets []Budget, out []Result) (allowed, noRoom bool) {
	if len(budgets) == 0 {
		return true, false
	}
	n := l.replicas.Load()
	t := now.UnixNano()
	s := &l.shards[maphash.String(l.seed, string(budgets[0].Key.Credential))%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	var next [4]state
	var counted [4]bool // the budget exists already: no new one to count in its namespace
	allowed = true
	for i, b := range budgets {
		lim := b.Limit
		// This replica's share: n times the interval (rounded up: never more than
		// the limit), the burst divided (rounded up: a burst of one is one on
		// every replica), at most the period's requests.
		interval := (int64(lim.Per)*n + lim.Requests - 1) / lim.Requests
		burst := (min(lim.Burst, lim.Requests) + n - 1) / n
		tolerance := (burst - 1) * interval
		st, ok := s.budgets[b.Key]
		if !ok && !l.roomLocked(s, namespace, t) {
			l.refusedCount.Add(1)
			out[i] = Result{RetryAfter: time.Second, Reset: time.Second}
			return false, true
		}
		tat := st.tat
		if tat < t {
			tat = t
		} else if st.interval != interval && st.interval > 0 {
			// The requests counted stay counted, at the new interval: raising a
			// limit lets the credential through at once, lowering it spends what
			// it has.
			tat = t + int64(min(float64(tat-t)*float64(interval)/float64(st.interval), float64(tolerance+interval)))
		}
		backlog := tat - t
		if backlog > tolerance {
			allowed = false
			out[i] = Result{Reset: time.Duration(backlog), RetryAfter: time.Duration(backlog - tolerance)}
		} else {
			out[i] = Result{Allowed: true, Remaining: (tolerance - backlog) / interval, Reset: time.Duration(backlog + interval)}
		}
		next[i], counted[i] = state{tat: tat, interval: interval, namespace: namespace}, ok
	}
	if !allowed {
		for i := range budgets {
			out[i].Allowed = false
		}
		return false, false
	}
	for i, b := range budgets {
		st := next[i]
		st.tat += st.interval
		if !counted[i] {
			s.namespace[namespace]++
		}
		s.budgets[b.Key] = st
	}
	return true, false
}

// roomLocked reports whether s may hold one more budget of namespace, sweeping
// it (at most once per sweepEvery) when full.
func (l *Limiter) roomLocked(s *shard, namespace string, t int64) bool {
	if len(s.budgets) < l.maxPerShard && s.namespace[namespace] < l.maxPerNSPS {
		return true
	}
	if t-s.lastSweep < int64(sweepEvery) {
		return false
	}
	l.sweepLocked(s, t)
	return len(s.budgets) < l.maxPerShard && s.namespace[namespace] < l.maxPerNSPS
}

// Refused counts the requests refused because a new budget found no room.
func (l *Limiter) Refused() int64 { return l.refusedCount.Load() }

// Sweep drops the budgets that are whole again at now (TAT in the past): they
// are the same as absent. Run it now and then.
func (l *Limiter) Sweep(now time.Time) {
	t := now.UnixNano()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		l.sweepLocked(s, t)
		s.mu.Unlock()
	}
}

func (l *Limiter) sweepLocked(s *shard, t int64) {
	s.lastSweep = t
	for k, st := range s.budgets {
		if st.tat <= t {
			delete(s.budgets, k)
			if s.namespace[st.namespace]--; s.namespace[st.namespace] <= 0 {
				delete(s.namespace, st.namespace)
			}
		}
	}
}

// Budgets is how many budgets are held.
func (l *Limiter) Budgets() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.budgets)
		s.mu.Unlock()
	}
	return n
}
