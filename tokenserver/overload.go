package tokenserver

import (
	"context"
	runtimemetrics "runtime/metrics"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// schedulerWatch tells when the process is CPU-overloaded, from the Go scheduler's
// own latency: how long runnable goroutines waited for a CPU over the last window.
//
// A flood of requests queues up as goroutines reading and parsing requests, all
// runnable, before any handler runs: an in-flight bound never sees that backlog
// (make test-chaos: 6,000 RS256 token requests on 2,000 connections filled none of
// 64 slots, and some waited past their 10 s timeout). When the scheduler's latency
// says the CPU is behind, new requests are refused at once with 503 and
// Retry-After, which frees the CPU for those already being served.
type schedulerWatch struct {
	// threshold is the 90th-percentile scheduling latency above which the process
	// counts as overloaded; zero disables the watch.
	threshold  time.Duration
	overloaded atomic.Bool
}

// schedWindow is how often the latency histogram is sampled: the window the
// percentile is computed over, and the delay before shedding starts or stops.
const schedWindow = 100 * time.Millisecond

// run samples the scheduler's latency until ctx ends.
func (w *schedulerWatch) run(ctx context.Context) {
	if w.threshold <= 0 {
		return
	}
	sample := []runtimemetrics.Sample{{Name: "/sched/latencies:seconds"}}
	runtimemetrics.Read(sample)
	previous := copyCounts(sample[0].Value.Float64Histogram())
	wait.UntilWithContext(ctx, func(context.Context) {
		runtimemetrics.Read(sample)
		h := sample[0].Value.Float64Histogram()
		w.overloaded.Store(percentileSince(h, previous, 0.9) > w.threshold.Seconds())
		previous = copyCounts(h)
	}, schedWindow)
}

// Overloaded reports whether the last window's scheduling latency was over threshold.
func (w *schedulerWatch) Overloaded() bool { return w.overloaded.Load() }

func copyCounts(h *runtimemetrics.Float64Histogram) []uint64 {
	return append([]uint64(nil), h.Counts...)
}

// percentileSince is the p-quantile, as the lower bound of its bucket, of what the
// cumulative histogram h gained since the counts previous; 0 when nothing did.
func percentileSince(h *runtimemetrics.Float64Histogram, previous []uint64, p float64) float64 {
	var total uint64
	for i, c := range h.Counts {
		total += c - previous[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(p * float64(total))
	var seen uint64
	for i, c := range h.Counts {
		seen += c - previous[i]
		if seen > rank {
			return h.Buckets[i]
		}
	}
	return h.Buckets[len(h.Buckets)-1]
}
