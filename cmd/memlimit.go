package main

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
)

// memoryLimitRatio is the share of the container's memory limit given to Go's
// heap (GOMEMLIMIT); the rest is for what the limit counts beside the heap:
// goroutine stacks, the runtime's own memory, pages not yet returned to the OS.
const memoryLimitRatio = 0.9

// limitMemory sets Go's soft memory limit to memoryLimitRatio of the container's
// memory limit (its cgroup's, v1 or v2), and follows it once a minute, as an
// in-place resize can change it. Unless GOMEMLIMIT is set (AUTOMEMLIMIT=off
// turns this off; AUTOMEMLIMIT=0.8 sets another ratio).
//
// Why: Go knows nothing of the container. It lets the heap grow to twice the
// live heap between collections (three times in the token server and the
// authorizer, --gc-percent), so a process whose live heap fits its limit is
// OOM-killed on the way to the next collection: the manager at 100,000 APIKeys
// holds ~390 MiB after a collection (README, "Scale envelope") and would need
// ~780 MiB before one, under the chart's 512 MiB. With the limit known, Go
// collects sooner as the heap nears it instead.
func limitMemory(log logr.Logger) {
	limit, err := memlimit.Set(
		memlimit.WithRatio(memoryLimitRatio),
		memlimit.WithProvider(memlimit.FromCgroup),
		memlimit.WithRefreshInterval(context.Background(), time.Minute),
		// It logs the limit it sets, a GOMEMLIMIT it leaves alone, and its errors
		// (at start and on each refresh).
		memlimit.WithLogger(slog.New(logr.ToSlogHandler(log.WithName("memlimit")))),
	)
	if err == nil && limit == math.MaxInt64 {
		log.Info("no container memory limit: Go's memory limit (GOMEMLIMIT) stays unset")
	}
}
