package controllers

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func request(ns string, i int) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: fmt.Sprint("key-", i)}}
}

func newTestFairQueue(t *testing.T) *fairQueue {
	t.Helper()
	q := NewFairQueue("", workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](time.Millisecond, time.Second)).(*fairQueue)
	t.Cleanup(q.ShutDown)
	return q
}

// next hands out the next request as a controller's worker does, and is done with it.
func next(t *testing.T, q *fairQueue) (reconcile.Request, int) {
	t.Helper()
	item, priority, shutdown := q.GetWithPriority()
	if shutdown {
		t.Fatal("the queue shut down")
	}
	q.Done(item)
	return item, priority
}

// A namespace's burst does not hold another namespace's request behind it: that
// one is handed out after at most one request of each namespace with work waiting.
func TestFairQueueServesNamespacesInTurn(t *testing.T) {
	q := newTestFairQueue(t)
	for i := range 1000 {
		q.Add(request("flood", i))
	}
	q.Add(request("quiet", 0))
	for i := range 10 {
		q.Add(request("steady", i))
	}
	var order []string
	for range 8 {
		item, _ := next(t, q)
		order = append(order, item.Namespace)
	}
	want := []string{"flood", "quiet", "steady", "flood", "steady", "flood", "steady", "flood"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("handed out %v, want %v", order, want)
	}
	// A namespace that comes back after the others' bursts waits for nobody's.
	for q.Len() > 900 {
		next(t, q)
	}
	q.Add(request("quiet", 1))
	first, _ := next(t, q)
	second, _ := next(t, q)
	if first != request("quiet", 1) && second != request("quiet", 1) {
		t.Fatalf("a namespace with nothing waiting waited behind more than one request of the other: got %v, %v", first, second)
	}
}

// Priorities come first (the initial list's and resyncs' low priority below
// changes), and a request handed out carries the priority it was queued at.
func TestFairQueueKeepsPriorities(t *testing.T) {
	q := newTestFairQueue(t)
	low := ptr.To(handler.LowPriority)
	for i := range 3 {
		q.AddWithOpts(priorityqueue.AddOpts{Priority: low}, request("listed", i))
	}
	q.Add(request("changed", 0))
	q.AddWithOpts(priorityqueue.AddOpts{Priority: low}, request("raised", 0))
	q.Add(request("raised", 0)) // changed while waiting: raised to the default priority
	for _, want := range []struct {
		item     reconcile.Request
		priority int
	}{{request("changed", 0), 0}, {request("raised", 0), 0}, {request("listed", 0), handler.LowPriority}} {
		if item, priority := next(t, q); item != want.item || priority != want.priority {
			t.Fatalf("handed out %v at %d, want %v at %d", item, priority, want.item, want.priority)
		}
	}
}

// A request re-added while it is being handled is handed out again once, after
// Done; a delayed one when it is due.
func TestFairQueueKeepsTheWorkQueueSemantics(t *testing.T) {
	q := newTestFairQueue(t)
	r := request("a", 0)
	q.Add(r)
	q.Add(r)
	if q.Len() != 1 {
		t.Fatalf("%d queued, want 1 (deduplicated)", q.Len())
	}
	item, _, _ := q.GetWithPriority()
	q.Add(r) // while it is handled
	if q.Len() != 0 {
		t.Fatal("handed out twice at once")
	}
	q.Done(item)
	if q.Len() != 1 {
		t.Fatal("a request re-added while handled is lost")
	}
	next(t, q)
	q.AddWithOpts(priorityqueue.AddOpts{After: 20 * time.Millisecond}, request("a", 1))
	start := time.Now()
	if item, _ := next(t, q); item != request("a", 1) || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("got %v after %v", item, time.Since(start))
	}
}

// Each priority has its own turns: a namespace with a backlog at low priority
// (the initial list after a restart) is not pushed behind another's burst of
// changes when it changes something itself, nor when a waiting request of it is
// raised by a change.
func TestFairQueueTurnsArePerPriority(t *testing.T) {
	q := newTestFairQueue(t)
	low := ptr.To(handler.LowPriority)
	for i := range 100 {
		q.AddWithOpts(priorityqueue.AddOpts{Priority: low}, request("listed", i))
	}
	for i := range 100 {
		q.Add(request("burst", i))
	}
	q.Add(request("listed", 1000))
	q.Add(request("listed", 50)) // waiting at low priority, changed since
	var served []reconcile.Request
	for range 4 {
		item, _ := next(t, q)
		served = append(served, item)
	}
	want := []reconcile.Request{request("burst", 0), request("listed", 1000), request("burst", 1), request("listed", 50)}
	if fmt.Sprint(served) != fmt.Sprint(want) {
		t.Fatalf("handed out %v, want %v", served, want)
	}
}

// Once the queue shuts down it hands out nothing more: the backlog is not run
// through reconciles whose context is already cancelled.
func TestFairQueueStopsHandingOutAtShutdown(t *testing.T) {
	q := newTestFairQueue(t)
	for i := range 10 {
		q.Add(request("a", i))
	}
	q.ShutDown()
	if _, _, shutdown := q.GetWithPriority(); !shutdown {
		t.Fatal("a request handed out after the queue shut down")
	}
}

// Once a burst has drained, the queue holds none of the memory it took: a Go map
// keeps the memory of the most entries it ever held.
func TestFairQueueLetsGoOfABurstOnceItDrains(t *testing.T) {
	q := newTestFairQueue(t)
	for i := range 10_000 {
		q.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(-100)}, request("flood", i))
	}
	for q.Len() > 0 {
		next(t, q)
	}
	o := q.order
	o.mu.Lock()
	if len(o.priority) != 0 || len(o.waiting) != 0 || o.priorityPeak != 0 || o.waitingPeak != 0 || cap(o.ready) != 0 {
		t.Errorf("after the burst: %d priorities (peak %d), %d waiting (peak %d), a heap of capacity %d",
			len(o.priority), o.priorityPeak, len(o.waiting), o.waitingPeak, cap(o.ready))
	}
	o.mu.Unlock()
	// and serves the next requests as before.
	q.Add(request("a", 0))
	q.Add(request("a", 1))
	q.Add(request("b", 0))
	var order []string
	for range 3 {
		item, _ := next(t, q)
		order = append(order, item.String())
	}
	if want := "[a/key-0 b/key-0 a/key-1]"; fmt.Sprint(order) != want {
		t.Errorf("handed out %v, want %s", order, want)
	}
}
