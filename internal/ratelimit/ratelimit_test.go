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

// take spends one request from budget k alone.
func (l *Limiter) take(k Key, lim *apirules.Limit, now time.Time) Result {
	var out [1]Result
	l.Take(now, "ns", []Budget{{k, lim}}, out[:])
	return out[0]
}

func TestBurstThenSteadyRate(t *testing.T) {
	l := New(1000, 1000)
	k := Key{Credential: "key-a", API: "api", Rule: APIBudget}
	lim := &apirules.Limit{Requests: 60, Per: time.Minute, Burst: 10} // one a second, ten at once
	for i := range 10 {
		if r := l.take(k, lim, start); !r.Allowed || r.Remaining != int64(9-i) {
			t.Fatalf("request %d of the burst: %+v", i+1, r)
		}
	}
	r := l.take(k, lim, start)
	if r.Allowed || r.RetryAfter != time.Second || r.Remaining != 0 {
		t.Fatalf("the 11th request at once: %+v, want refused, retry after 1s", r)
	}
	if r := l.take(k, lim, start.Add(999*time.Millisecond)); r.Allowed {
		t.Fatalf("a request before the retry: %+v", r)
	}
	if r := l.take(k, lim, start.Add(time.Second)); !r.Allowed {
		t.Fatalf("a request at the retry: %+v", r)
	}
	// A minute at one a second, after the burst: all through, and not one more.
	allowed := 0
	for i := range 120 {
		if l.take(k, lim, start.Add(2*time.Second+time.Duration(i)*500*time.Millisecond)).Allowed {
			allowed++
		}
	}
	if allowed != 60 {
		t.Fatalf("%d requests of 120 at two a second let through in a minute, want 60", allowed)
	}
}

func TestBudgetsAreIndependent(t *testing.T) {
	l := New(1000, 1000)
	lim := &apirules.Limit{Requests: 1, Per: time.Hour, Burst: 1}
	a, b := Key{Credential: "a", API: "api", Rule: APIBudget}, Key{Credential: "b", API: "api", Rule: APIBudget}
	rule := Key{Credential: "a", API: "api", Rule: 0}
	if !l.take(a, lim, start).Allowed || l.take(a, lim, start).Allowed {
		t.Fatal("a's budget of one")
	}
	if !l.take(b, lim, start).Allowed {
		t.Fatal("b is limited by a's requests")
	}
	if !l.take(rule, lim, start).Allowed {
		t.Fatal("a rule's budget is spent by the API's")
	}
}

func TestReplicaShare(t *testing.T) {
	l := New(1000, 1000)
	k := Key{Credential: "key", API: "api", Rule: APIBudget}
	lim := &apirules.Limit{Requests: 100, Per: time.Second, Burst: 100}
	l.SetReplicas(4)
	allowed := 0
	for range 100 {
		if l.take(k, lim, start).Allowed {
			allowed++
		}
	}
	if allowed != 25 {
		t.Fatalf("%d of a burst of 100 let through by one of 4 replicas, want 25", allowed)
	}
	// Its steady share: 25 a second.
	if r := l.take(k, lim, start.Add(40*time.Millisecond)); !r.Allowed {
		t.Fatalf("one interval (40 ms) later: %+v", r)
	}
	l.SetReplicas(0)
	if l.Replicas() != 1 {
		t.Fatal("no replica seen counts as one: this one")
	}
}

func TestSweepAndBound(t *testing.T) {
	l := New(shards, shards) // one budget per shard
	lim := &apirules.Limit{Requests: 1, Per: time.Minute, Burst: 1}
	first := Key{Credential: "first", API: "api", Rule: APIBudget}
	second := first
	for i := 0; second == first || l.shardOf(second) != l.shardOf(first); i++ {
		second.Credential = types.UID(fmt.Sprint("other-", i))
	}
	if !l.take(first, lim, start).Allowed {
		t.Fatal("first request")
	}
	// The shard is full: a new credential there is refused (the gate fails
	// closed) rather than let through, or first's budget forgotten.
	if r := l.take(second, lim, start); r.Allowed || l.Refused() != 1 || r.RetryAfter != time.Second {
		t.Fatalf("a credential beyond the bound: %+v, refused %d", r, l.Refused())
	}
	if l.take(first, lim, start).Allowed {
		t.Fatal("first's spent budget was forgotten")
	}
	l.Sweep(start.Add(time.Minute))
	if n := l.Budgets(); n != 0 {
		t.Fatalf("%d budgets left after a sweep when all are whole again", n)
	}
	if !l.take(second, lim, start.Add(time.Minute)).Allowed || l.Budgets() != 1 {
		t.Fatal("a swept shard has room again")
	}
}

// TestNamespaceShare: one namespace's credentials fill its own share of the
// budgets, and another namespace's still find room.
func TestNamespaceShare(t *testing.T) {
	l := New(shards*100, shards*10) // 10 per namespace per shard
	lim := &apirules.Limit{Requests: 1, Per: time.Hour, Burst: 1}
	var out [1]Result
	refusedMallory := 0
	for i := range 2000 {
		k := Key{Credential: types.UID(fmt.Sprint("mallory-", i)), API: "api", Rule: APIBudget}
		if ok, noRoom := l.Take(start, "mallory", []Budget{{k, lim}}, out[:]); !ok && noRoom {
			refusedMallory++
		}
	}
	if l.Budgets() != shards*10 || refusedMallory != 2000-shards*10 {
		t.Fatalf("mallory holds %d budgets (%d refused), want her share of %d", l.Budgets(), refusedMallory, shards*10)
	}
	// As many credentials as alice's share of one shard: wherever the (randomly
	// seeded) hash puts them, none is refused by her own share, only by room
	// mallory took. (200 of them, as this test had, put more than 10 in one of
	// the 64 shards in 7 runs of 500.)
	for i := range 10 {
		k := Key{Credential: types.UID(fmt.Sprint("alice-", i)), API: "api", Rule: APIBudget}
		if ok, _ := l.Take(start, "alice", []Budget{{k, lim}}, out[:]); !ok {
			t.Fatalf("alice's credential %d refused: mallory took her room", i)
		}
	}
}

// TestAllOrNothing: a request refused by one budget spends none of the others.
func TestAllOrNothing(t *testing.T) {
	l := New(1000, 1000)
	api := Key{Credential: "key", API: "api", Rule: APIBudget}
	route := Key{Credential: "key", API: "api", Rule: 7}
	apiLimit := &apirules.Limit{Requests: 3, Per: time.Hour, Burst: 3}
	routeLimit := &apirules.Limit{Requests: 1, Per: time.Hour, Burst: 1}
	var out [2]Result
	both := []Budget{{api, apiLimit}, {route, routeLimit}}
	if ok, _ := l.Take(start, "ns", both, out[:]); !ok {
		t.Fatal("the first request")
	}
	for range 5 {
		if ok, _ := l.Take(start, "ns", both, out[:]); ok || out[0].Allowed || !(out[1].RetryAfter > 0) {
			t.Fatalf("the route's second request: %+v", out)
		}
	}
	if r := l.take(api, apiLimit, start); !r.Allowed || r.Remaining != 1 {
		t.Fatalf("the API's budget after five refused requests: %+v, want one of three spent before this one", r)
	}
}

func (l *Limiter) shardOf(k Key) uint64 {
	return maphashString(l, string(k.Credential)) % shards
}

// TestTakeAllocatesNothing: once a budget exists, counting allocates nothing.
func TestTakeAllocatesNothing(t *testing.T) {
	l := New(1000, 1000)
	k := Key{Credential: "key", API: "api", Rule: APIBudget}
	lim := &apirules.Limit{Requests: 1 << 30, Per: time.Second, Burst: 1 << 30}
	now := start
	l.take(k, lim, now)
	if allocs := testing.AllocsPerRun(1000, func() { l.take(k, lim, now) }); allocs != 0 {
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
	l := New(10*n, 10*n)
	for _, u := range uids {
		l.take(Key{Credential: u, API: "api", Rule: APIBudget}, lim, start)
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
	l := New(1<<20, 1<<20)
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
			l.take(keys[i&1023], lim, now)
			i++
		}
	})
}

func maphashString(l *Limiter, s string) uint64 { return maphash.String(l.seed, s) }

// TestEditedLimitAppliesAtOnce: the requests counted stay counted when the limit
// changes, so a raised limit lets the next request through and a lowered one
// spends what is left.
func TestEditedLimitAppliesAtOnce(t *testing.T) {
	l := New(1000, 1000)
	k := Key{Credential: "key", API: "api", Rule: APIBudget}
	three := &apirules.Limit{Requests: 3, Per: time.Hour, Burst: 3}
	for range 3 {
		l.take(k, three, start)
	}
	if l.take(k, three, start).Allowed {
		t.Fatal("the fourth of three")
	}
	hundred := &apirules.Limit{Requests: 100, Per: time.Hour, Burst: 100}
	if r := l.take(k, hundred, start); !r.Allowed || r.Remaining != 96 {
		t.Fatalf("after the limit is raised to 100: %+v, want allowed with 96 left", r)
	}
	if r := l.take(k, &apirules.Limit{Requests: 2, Per: time.Hour, Burst: 2}, start); r.Allowed {
		t.Fatalf("after it is lowered to 2, with 4 counted: %+v", r)
	}
}
