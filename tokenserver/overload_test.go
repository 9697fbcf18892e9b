package tokenserver

import (
	"context"
	runtimemetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentileSince(t *testing.T) {
	h := &runtimemetrics.Float64Histogram{Buckets: []float64{0, 0.001, 0.01, 0.1, 1}, Counts: []uint64{100, 10, 5, 5}}
	for _, tc := range []struct {
		previous []uint64
		p, want  float64
	}{
		{[]uint64{100, 10, 5, 5}, 0.9, 0},   // nothing new
		{[]uint64{0, 10, 5, 5}, 0.9, 0},     // only fast waits since
		{[]uint64{100, 10, 5, 0}, 0.9, 0.1}, // only slow ones
		{[]uint64{90, 10, 5, 0}, 0.5, 0},    // 10 fast, 5 slow: rank 7 of 15 is fast
		{[]uint64{90, 10, 5, 0}, 0.2, 0},    // rank 3 of 15: fast
		{[]uint64{99, 10, 0, 5}, 0.9, 0.01}, // 1 fast, 5 medium: medium
	} {
		if got := percentileSince(h, tc.previous, tc.p); got != tc.want {
			t.Errorf("percentileSince(previous %v, p %v) = %v, want %v", tc.previous, tc.p, got, tc.want)
		}
	}
}

// TestSchedulerWatch floods the runtime's own scheduler with CPU-bound goroutines:
// the watch must call it overloaded, and not once they are done.
func TestSchedulerWatch(t *testing.T) {
	w := &schedulerWatch{threshold: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.run(ctx)

	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			for !stop.Load() {
			}
		})
	}
	waitUntil(t, 10*time.Second, w.Overloaded, "overloaded while 200 goroutines spin")
	stop.Store(true)
	wg.Wait()
	waitUntil(t, 10*time.Second, func() bool { return !w.Overloaded() }, "no longer overloaded once they stop")
}

func waitUntil(t *testing.T, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
