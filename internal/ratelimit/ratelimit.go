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
// some of them gets less (at worst its share on one replica), never more than
// the limit plus each replica's burst share while the replica count changes.
//
// Counting allocates nothing once a budget exists; memory is bounded: idle
// budgets (TAT in the past, so the same as absent) are dropped by Sweep, and at
// most MaxBudgets are kept.
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
// UID) on an API, for the API's own budget (Rule -1) or a rule's.
type Key struct {
	Credential types.UID
	API        types.UID
	Rule       int32
}

// APIBudget is the Rule of an API's own budget.
const APIBudget = -1

const shards = 64

// Limiter holds the budgets. The zero value is not usable: New.
type Limiter struct {
	seed           maphash.Seed
	maxPerShard    int
	replicas       atomic.Int64
	shards         [shards]shard
	untrackedCount atomic.Int64
}

type shard struct {
	mu  sync.Mutex
	tat map[Key]state
	_   [40]byte // keeps shards' locks on separate cache lines
}

// state is one budget's: the TAT (Unix nanoseconds) and the interval it was
// counted in, so that a limit edited (or a replica count changed) keeps the
// number of requests counted, not the time they stand for.
type state struct{ tat, interval int64 }

// New is a limiter that keeps at most maxBudgets budgets.
func New(maxBudgets int) *Limiter {
	l := &Limiter{seed: maphash.MakeSeed(), maxPerShard: max(1, maxBudgets/shards)}
	l.replicas.Store(1)
	for i := range l.shards {
		l.shards[i].tat = map[Key]state{}
	}
	return l
}

// SetReplicas sets how many replicas share each limit (at least 1).
func (l *Limiter) SetReplicas(n int) { l.replicas.Store(int64(max(1, n))) }

// Replicas is how many replicas share each limit.
func (l *Limiter) Replicas() int { return int(l.replicas.Load()) }

// Result is one request's verdict on one budget.
type Result struct {
	Allowed bool
	// Remaining is how many more requests the budget lets through now, over all
	// replicas (this replica's count times their number, at most Burst).
	Remaining int64
	// Reset is when the budget is whole again; RetryAfter, for a refused request,
	// when the next one will be let through.
	Reset, RetryAfter time.Duration
}

// Take spends one request of budget k, limited by lim, at now.
func (l *Limiter) Take(k Key, lim *apirules.Limit, now time.Time) Result {
	n := l.replicas.Load()
	// This replica's share: n times the interval, the burst divided (rounded up:
	// a burst of one is one on every replica).
	interval := int64(lim.Per) * n / lim.Requests
	if interval < 1 {
		interval = 1
	}
	burst := (lim.Burst + n - 1) / n
	tolerance := (burst - 1) * interval
	t := now.UnixNano()

	s := &l.shards[maphash.String(l.seed, string(k.Credential))%shards]
	s.mu.Lock()
	st, ok := s.tat[k]
	if !ok && len(s.tat) >= l.maxPerShard {
		l.sweepLocked(s, t)
		if len(s.tat) >= l.maxPerShard {
			// Every budget of the shard is in use: this one is not counted rather
			// than another forgotten (which would reset it). Only live
			// credentials reach the limiter, so this takes more of them than
			// MaxBudgets active at once.
			s.mu.Unlock()
			l.untrackedCount.Add(1)
			return Result{Allowed: true, Remaining: lim.Burst}
		}
	}
	tat := st.tat
	if tat < t {
		tat = t
	} else if st.interval != interval && st.interval > 0 {
		// The requests counted stay counted, at the new interval: raising a limit
		// lets the credential through at once, lowering it spends what it has.
		tat = t + int64(float64(tat-t)*float64(interval)/float64(st.interval))
	}
	if backlog := tat - t; backlog > tolerance {
		if tat != st.tat {
			s.tat[k] = state{tat, interval}
		}
		s.mu.Unlock()
		return Result{Reset: time.Duration(backlog), RetryAfter: time.Duration(backlog - tolerance)}
	}
	tat += interval
	s.tat[k] = state{tat, interval}
	s.mu.Unlock()
	backlog := tat - t
	remaining := (tolerance + interval - backlog) / interval * n
	return Result{Allowed: true, Remaining: min(max(remaining, 0), lim.Burst), Reset: time.Duration(backlog)}
}

// Untracked counts the requests let through uncounted because every budget of
// their shard was in use.
func (l *Limiter) Untracked() int64 { return l.untrackedCount.Load() }

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
	for k, st := range s.tat {
		if st.tat <= t {
			delete(s.tat, k)
		}
	}
}

// Budgets is how many budgets are held.
func (l *Limiter) Budgets() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.tat)
		s.mu.Unlock()
	}
	return n
}
