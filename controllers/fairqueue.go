package controllers

import (
	"container/heap"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Every tenant's objects go through the same work queue of each controller, and
// controller-runtime's queue is first in, first out within a priority: a tenant
// that applies ten thousand APIKeys at once would hold every other tenant's new
// key behind them for minutes (make bench: ~140 reconciles a second). The fair
// queue serves the namespaces with work waiting in turn, as start-time fair
// queueing does: each request gets a tag when it is ready, one past the later of
// the virtual time (the tag of the last request handed out) and the tag of its
// namespace's previous request, and the lowest tag goes first. A namespace's
// burst so spreads over the virtual time it would take alone, while a namespace
// with nothing waiting starts at the virtual time: served after at most one
// request of each other namespace that has work waiting.
//
// Priorities stay as controller-runtime's handlers set them (the initial list
// and resyncs below changes): the order is the priority, then the tag, and each
// priority keeps its own virtual time and tags. It is client-go's work queue
// underneath (deduplication, a request never handed out twice at once, delays,
// backoff, metrics), ordered by fairOrder.

// NewFairQueue is a controller.Options.NewQueue.
func NewFairQueue(controllerName string, rateLimiter workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	order := newFairOrder()
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(rateLimiter, workqueue.TypedRateLimitingQueueConfig[reconcile.Request]{
		Name: controllerName,
		DelayingQueue: workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[reconcile.Request]{
			Name:  controllerName,
			Queue: workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[reconcile.Request]{Name: controllerName, Queue: order}),
		}),
	})
	return &fairQueue{TypedRateLimitingInterface: queue, order: order}
}

// fairQueue takes the priorities of controller-runtime's handlers
// (priorityqueue.PriorityQueue) and hands them to fairOrder.
type fairQueue struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	order *fairOrder
}

var _ priorityqueue.PriorityQueue[reconcile.Request] = &fairQueue{}

func (q *fairQueue) AddWithOpts(o priorityqueue.AddOpts, items ...reconcile.Request) {
	for _, item := range items {
		q.order.ask(item, ptr.Deref(o.Priority, 0))
		switch { // as controller-runtime's own wrapper: backoff before a delay
		case o.RateLimited:
			q.TypedRateLimitingInterface.AddRateLimited(item)
		case o.After > 0:
			q.TypedRateLimitingInterface.AddAfter(item, o.After)
		default:
			q.TypedRateLimitingInterface.Add(item)
		}
	}
}

// Add, AddAfter and AddRateLimited queue at the default priority.
func (q *fairQueue) Add(item reconcile.Request) { q.AddWithOpts(priorityqueue.AddOpts{}, item) }

func (q *fairQueue) AddAfter(item reconcile.Request, after time.Duration) {
	q.AddWithOpts(priorityqueue.AddOpts{After: after}, item)
}

func (q *fairQueue) AddRateLimited(item reconcile.Request) {
	q.AddWithOpts(priorityqueue.AddOpts{RateLimited: true}, item)
}

func (q *fairQueue) Get() (reconcile.Request, bool) {
	item, _, shutdown := q.GetWithPriority()
	return item, shutdown
}

// GetWithPriority hands out the next request with the priority it was queued at.
// Once the queue is shutting down it hands out nothing more, as controller-
// runtime's priority queue: client-go's would hand out the whole backlog, each
// to a reconcile whose context is already cancelled, holding up the manager's
// shutdown and the release of its lease.
func (q *fairQueue) GetWithPriority() (reconcile.Request, int, bool) {
	item, shutdown := q.TypedRateLimitingInterface.Get()
	priority := q.order.handedOut(item)
	if !shutdown && q.ShuttingDown() {
		q.Done(item)
		return item, priority, true
	}
	return item, priority, shutdown
}

// fairOrder is the order of the requests ready now (workqueue.Queue): by
// priority, then by tag, each priority with a virtual time of its own (a
// backlog at a low priority, the initial list after a restart, must not push a
// namespace's changes behind another's burst). The work queue calls Push, Touch,
// Pop and Len under its own lock; ask and handedOut come from the controller's
// goroutines.
type fairOrder struct {
	mu sync.Mutex
	// now is each priority's virtual time: the tag of its last request handed out.
	now map[int]uint64
	// last is each namespace's latest tag at a priority, while it is ahead of
	// that priority's virtual time.
	last map[namespaceAt]uint64
	// priority is what each request was last queued at, until it is handed out.
	priority map[reconcile.Request]int
	ready    readyHeap
	// waiting finds a ready request's place in the heap (Touch).
	waiting map[reconcile.Request]*readyRequest
	// seq breaks ties (requests of different namespaces at the same tag).
	seq uint64
	// priorityPeak and waitingPeak are the most entries priority and waiting
	// held since they were last made afresh (fresh).
	priorityPeak, waitingPeak int
}

type namespaceAt struct {
	namespace string
	priority  int
}

func newFairOrder() *fairOrder {
	return &fairOrder{now: map[int]uint64{}, last: map[namespaceAt]uint64{},
		priority: map[reconcile.Request]int{}, waiting: map[reconcile.Request]*readyRequest{}}
}

// ask records the priority item is queued at: the highest asked since it was
// last handed out.
func (f *fairOrder) ask(item reconcile.Request, priority int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.priority[item]; !ok || priority > p {
		f.priority[item] = priority
		f.priorityPeak = max(f.priorityPeak, len(f.priority))
	}
}

// handedOut forgets item's priority and returns it (the controller passes it
// back when it requeues the request).
func (f *fairOrder) handedOut(item reconcile.Request) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.priority[item]
	delete(f.priority, item)
	f.priority = fresh(f.priority, &f.priorityPeak)
	return p
}

// tag is item's namespace's next tag at priority. Called with f.mu held.
func (f *fairOrder) tag(item reconcile.Request, priority int) uint64 {
	at := namespaceAt{item.Namespace, priority}
	tag := max(f.now[priority], f.last[at]) + 1
	f.last[at] = tag
	f.seq++
	return tag
}

// Push queues a request that is ready now at its namespace's next tag.
func (f *fairOrder) Push(item reconcile.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.priority[item]
	r := &readyRequest{item: item, priority: p, tag: f.tag(item, p), seq: f.seq}
	f.waiting[item] = r
	f.waitingPeak = max(f.waitingPeak, len(f.waiting))
	heap.Push(&f.ready, r)
}

// Touch moves a waiting request to the priority asked again since, at its
// namespace's next tag there.
func (f *fairOrder) Touch(item reconcile.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.waiting[item]; ok && f.priority[item] > r.priority {
		r.priority = f.priority[item]
		r.tag, r.seq = f.tag(item, r.priority), f.seq
		heap.Fix(&f.ready, r.index)
	}
}

func (f *fairOrder) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ready)
}

// Pop hands out the first request and moves its priority's virtual time to its tag.
func (f *fairOrder) Pop() reconcile.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := heap.Pop(&f.ready).(*readyRequest)
	delete(f.waiting, r.item)
	if len(f.waiting) == 0 && f.waitingPeak > smallMap {
		f.ready = nil // the heap's array, as large as the burst was
	}
	f.waiting = fresh(f.waiting, &f.waitingPeak)
	now := max(f.now[r.priority], r.tag)
	f.now[r.priority] = now
	if at := (namespaceAt{r.item.Namespace, r.priority}); f.last[at] <= now {
		delete(f.last, at) // caught up: max(now, last) is now
	}
	return r.item
}

// fresh returns m, or once m is empty after holding more than smallMap entries
// (*peak), a new empty map: a Go map keeps the memory of the most entries it ever
// held, and the burst of a tenant's thousands of new credentials would otherwise
// cost the manager ~250 bytes per request for as long as it runs (make bench,
// the manager's heap after reconciling 10,000 APIKeys).
func fresh[K comparable, V any](m map[K]V, peak *int) map[K]V {
	if len(m) > 0 || *peak <= smallMap {
		return m
	}
	*peak = 0
	return map[K]V{}
}

// smallMap is the size below which a map is kept when it empties.
const smallMap = 64

type readyRequest struct {
	item     reconcile.Request
	priority int
	tag, seq uint64
	index    int // in readyHeap
}

// readyHeap is a container/heap of the ready requests, first the highest
// priority, then the lowest tag.
type readyHeap []*readyRequest

func (h readyHeap) Len() int { return len(h) }
func (h readyHeap) Less(i, j int) bool {
	if h[i].priority != h[j].priority {
		return h[i].priority > h[j].priority
	}
	if h[i].tag != h[j].tag {
		return h[i].tag < h[j].tag
	}
	return h[i].seq < h[j].seq
}
func (h readyHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *readyHeap) Push(x any) {
	r := x.(*readyRequest)
	r.index = len(*h)
	*h = append(*h, r)
}
func (h *readyHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return r
}
