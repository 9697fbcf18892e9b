package lastused

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/latchkey-dev/latchkey/internal/index"
)

// A use in the flush period and the bucket its entry last noted is not noted
// again; a new bucket or a flush since is.
func TestUsedNotesOncePerPeriodAndBucket(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	u := New(nil, writtenAlready{}, clk, logr.Discard(), time.Second, time.Hour, prometheus.NewRegistry(), "test")
	ref := index.Ref{Namespace: "ns", Name: "key", UID: "uid"}
	var noted atomic.Uint64
	pending := func() (time.Time, bool) {
		u.mu.Lock()
		defer u.mu.Unlock()
		at, ok := u.pending[usageKey{index.KindAPIKey, ref}]
		return at, ok
	}
	forget := func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		delete(u.pending, usageKey{index.KindAPIKey, ref})
	}

	u.Used(index.KindAPIKey, ref, &noted, clk.Now())
	if _, ok := pending(); !ok {
		t.Fatal("the first use is not pending")
	}
	forget()
	clk.SetTime(clk.Now().Add(10 * time.Minute))
	u.Used(index.KindAPIKey, ref, &noted, clk.Now())
	if _, ok := pending(); ok {
		t.Fatal("a second use in the same period and bucket was noted again")
	}

	clk.SetTime(clk.Now().Add(time.Hour)) // the next bucket
	u.Used(index.KindAPIKey, ref, &noted, clk.Now())
	if at, ok := pending(); !ok || !at.Equal(clk.Now()) {
		t.Fatalf("a use in a new bucket: pending %v, %v", at, ok)
	}

	u.flush(context.Background()) // takes the pending uses (the cache has them already: nothing to write)
	if _, ok := pending(); ok {
		t.Fatal("the flush left the use pending")
	}
	u.Used(index.KindAPIKey, ref, &noted, clk.Now())
	if _, ok := pending(); !ok {
		t.Fatal("a use after a flush took the pending ones is not noted")
	}

	earlier := clk.Now()
	clk.SetTime(clk.Now().Add(time.Hour))
	u.Used(index.KindAPIKey, ref, &noted, clk.Now())
	u.Used(index.KindAPIKey, ref, nil, earlier) // a request that read its time before, reported after
	if at, ok := pending(); !ok || !at.Equal(clk.Now()) {
		t.Fatalf("an earlier use reported after a later one: pending %v, %v; want the later %v", at, ok, clk.Now())
	}

	u.Used(index.KindOAuthClient, ref, nil, clk.Now()) // no entry to remember it: always noted
	u.mu.Lock()
	_, ok := u.pending[usageKey{index.KindOAuthClient, ref}]
	u.mu.Unlock()
	if !ok {
		t.Fatal("a use without an entry is not noted")
	}
}

// writtenAlready is a watch cache that holds every last use already.
type writtenAlready struct{}

func (writtenAlready) LastUsed(string, types.UID) time.Time {
	return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
}
