package ratelimit

import (
	"fmt"
	"hash/maphash"
	"runtime"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/latchkey-dev/latchkey/internal/apirules"
)

var start = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

func TestBurstThenSteadyRate(t *testing.T) {
	l := New(1000)
	k := Key{Credential: "key-a", API: "api", Rule: APIBudget}
	lim := &apirules.Limit{Requests: 60, Per: time.Minute, Burst: 10} // one a second, ten at once
	for i := range 10 {
		if r := l.Take(k, lim, start); !r.Allowed || r.Remaining != int64(9-i) {
			t.Fatalf("request %d of the burst: %+v", i+1, r)
		}
	}
	r := l.Take(k, lim, start)
	if r.Allowed || r.RetryAfter != time.Second || r.Remaining != 0 {
		t.Fatalf("the 11th request at once: %+v, want refused, retry after 1s", r)
	}
	if r := l.Take(k, lim, start.Add(999*time.Millisecond)); r.Allowed {
		t.Fatalf("a request before the retry: %+v", r)
	}
	if r := l.Take(k, lim, start.Add(time.Second)); !r.Allowed {
		t.Fatalf("a request at the retry: %+v", r)
	}
	// A minute at one a second, after the burst: all through, and not one more.
	allowed := 0
	for i := range 120 {
		if l.Take(k, lim, start.Add(2*time.Second+time.Duration(i)*500*time.Millisecond)).Allowed {
			allowed++
		}
	}
	if allowed != 60 {
		t.Fatalf("%d requests of 120 at two a second let through in a minute, want 60", allowed)
	}
}

func TestBudgetsAreIndependent(t *testing.T) {
	l := New(1000)
	lim := &apirules.Limit{Requests: 1, Per: time.Hour, Burst: 1}
	a, b := Key{Credential: "a", API: "api", Rule: APIBudget}, Key{Credential: "b", API: "api", Rule: APIBudget}
	rule := Key{Credential: "a", API: "api", Rule: 0}
	if !l.Take(a, lim, start).Allowed || l.Take(a, lim, start).Allowed {
		t.Fatal("a's budget of one")
	}
	if !l.Take(b, lim, start).Allowed {
		t.Fatal("b is limited by a's requests")
	}
	if !l.Take(rule, lim, start).Allowed {
		t.Fatal("a rule's budget is spent by the API's")
	}
}

func TestReplicaShare(t *testing.T) {
	l := New(1000)
	k := Key{Credential: "key", API: "api", Rule: APIBudget}
	lim := &apirules.Limit{Requests: 100, Per: time.Second, Burst: 100}
	l.SetReplicas(4)
	allowed := 0
	for range 100 {
		if l.Take(k, lim, start).Allowed {
			allowed++
		}
	}
	if allowed != 25 {
		t.Fatalf("%d of a burst of 100 let through by one of 4 replicas, want 25", allowed)
	}
	// Its steady share: 25 a second.
	if r := l.Take(k, lim, start.Add(40*time.Millisecond)); !r.Allowed {
		t.Fatalf("one interval (40 ms) later: %+v", r)
	}
	l.SetReplicas(0)
	if l.Replicas() != 1 {
		t.Fatal("no replica seen counts as one: this one")
	}
}

func TestSweepAndBound(t *testing.T) {
	l := New(shards) // one budget per shard
	lim := &apirules.Limit{Requests: 1, Per: time.Minute, Burst: 1}
	first := Key{Credential: "first", API: "api", Rule: APIBudget}
	second := first
	for i := 0; second == first || l.shardOf(second) != l.shardOf(first); i++ {
		second.Credential = types.UID(fmt.Sprint("other-", i))
	}
	if !l.Take(first, lim, start).Allowed {
		t.Fatal("first request")
	}
	// The shard is full: a new credential there is let through uncounted rather
	// than first's budget forgotten (which would reset it).
	if r := l.Take(second, lim, start); !r.Allowed || l.Untracked() != 1 {
		t.Fatalf("a credential beyond the bound: %+v, untracked %d", r, l.Untracked())
	}
	if l.Take(first, lim, start).Allowed {
		t.Fatal("first's spent budget was forgotten")
	}
	l.Sweep(start.Add(time.Minute))
	if n := l.Budgets(); n != 0 {
		t.Fatalf("%d budgets left after a sweep when all are whole again", n)
	}
	if l.Take(second, lim, start.Add(time.Minute)); l.Budgets() != 1 || l.Untracked() != 1 {
		t.Fatal("a swept shard has room again")
	}
}

func (l *Limiter) shardOf(k Key) uint64 {
	return maphashString(l, string(k.Credential)) % shards
}

// TestTakeAllocatesNothing: once a budget exists, counting allocates nothing.
func TestTakeAllocatesNothing(t *testing.T) {
	l := New(1000)
	k := Key{Credential: "key", API: "api", Rule: APIBudget}
	lim := &apirules.Limit{Requests: 1 << 30, Per: time.Second, Burst: 1 << 30}
	now := start
	l.Take(k, lim, now)
	if allocs := testing.AllocsPerRun(1000, func() { l.Take(k, lim, now) }); allocs != 0 {
		t.Fatalf("Take allocates %.1f times per request", allocs)
	}
}

// TestBytesPerBudget measures the memory an active budget holds (the README
// states it): 100,000 budgets, after a GC.
func TestBytesPerBudget(t *testing.T) {
	const n = 100_000
	uids := make([]types.UID, n) // the index holds these strings already
	for i := range uids {
		uids[i] = types.UID(fmt.Sprintf("%08d-0000-4000-8000-000000000000", i))
	}
	lim := &apirules.Limit{Requests: 100, Per: time.Minute, Burst: 100}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := New(10 * n)
	for _, u := range uids {
		l.Take(Key{Credential: u, API: "api", Rule: APIBudget}, lim, start)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perBudget := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per active budget", perBudget)
	if perBudget > 128 {
		t.Fatalf("%.0f bytes per active budget, want at most 128", perBudget)
	}
	runtime.KeepAlive(l)
}

func BenchmarkTake(b *testing.B) {
	l := New(1 << 20)
	keys := make([]Key, 1024)
	for i := range keys {
		keys[i] = Key{Credential: types.UID(fmt.Sprint("key-", i)), API: "api", Rule: APIBudget}
	}
	lim := &apirules.Limit{Requests: 1 << 30, Per: time.Second, Burst: 1 << 30}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Take(keys[i&1023], lim, now)
			i++
		}
	})
}

func maphashString(l *Limiter, s string) uint64 { return maphash.String(l.seed, s) }

// TestEditedLimitAppliesAtOnce: the requests counted stay counted when the limit
// changes, so a raised limit lets the next request through and a lowered one
// spends what is left.
func TestEditedLimitAppliesAtOnce(t *testing.T) {
	l := New(1000)
	k := Key{Credential: "key", API: "api", Rule: APIBudget}
	three := &apirules.Limit{Requests: 3, Per: time.Hour, Burst: 3}
	for range 3 {
		l.Take(k, three, start)
	}
	if l.Take(k, three, start).Allowed {
		t.Fatal("the fourth of three")
	}
	hundred := &apirules.Limit{Requests: 100, Per: time.Hour, Burst: 100}
	if r := l.Take(k, hundred, start); !r.Allowed || r.Remaining != 96 {
		t.Fatalf("after the limit is raised to 100: %+v, want allowed with 96 left", r)
	}
	if r := l.Take(k, &apirules.Limit{Requests: 2, Per: time.Hour, Burst: 2}, start); r.Allowed {
		t.Fatalf("after it is lowered to 2, with 4 counted: %+v", r)
	}
}
