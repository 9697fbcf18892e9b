package controllers

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

func TestScopeCatalogueCheck(t *testing.T) {
	c := &ScopeCatalogue{}
	if hasAPIs, unknown := c.Check("ns", []string{"leads:read"}); hasAPIs || unknown != nil {
		t.Fatalf("empty catalogue: got %v, %v", hasAPIs, unknown)
	}
	entry := func(ns string, accepts []string, names ...string) *catalogueEntry {
		if accepts == nil {
			accepts = []string{ns}
		}
		return &catalogueEntry{namespace: ns, accepts: accepts, names: append([]string{}, names...)}
	}
	c.set("a", entry("ns", nil, "leads:read", "orders:write"))
	c.set("b", entry("ns", nil)) // an API without scopes is still an API
	c.set("c", entry("ns", nil, "leads:read"))
	c.set("c", nil)                                                        // removed: leads:read is still a's
	c.set("d", entry("other", nil, "billing:read"))                        // another namespace's: never counts in ns
	c.set("e", entry("platform", []string{allNamespaces}, "search:query")) // open to every namespace
	c.set("f", entry("partner", []string{"ns"}, "partner:sync"))           // lists ns
	for _, tc := range []struct {
		scope string
		known bool
	}{
		{"leads:read", true},
		{"leads:raed", false},
		{"leads:*", true}, // any leads scope
		{"orders:*", true},
		{"billing:*", false},
		{"billing:read", false},
		{"orders:read", false},
		{"search:query", true},
		{"partner:sync", true},
	} {
		if got := c.Known("ns", tc.scope); got != tc.known {
			t.Errorf("Known(ns, %q) = %v, want %v", tc.scope, got, tc.known)
		}
	}
	if _, unknown := c.Check("ns", []string{"leads:raed", "leads:read", "ledas:*"}); !slices.Equal(unknown, []string{"leads:raed", "ledas:*"}) {
		t.Errorf("unknown = %v", unknown)
	}
	if c.HasAPIs("elsewhere") {
		t.Error("an API open to every namespace decides that another namespace is checked")
	}
	if !c.HasAPIs("other") || c.Known("other", "leads:read") || !c.Known("other", "search:query") {
		t.Error("namespace other: its own API makes it checked, with its own and the open API's scopes only")
	}
	c.set("a", nil)
	if !c.HasAPIs("ns") || c.Known("ns", "leads:*") {
		t.Errorf("b remains, with no scope: HasAPIs %v, Known(leads:*) %v", c.HasAPIs("ns"), c.Known("ns", "leads:*"))
	}
	c.set("b", nil)
	if c.HasAPIs("ns") || c.ownFlips["ns"] != 2 {
		t.Errorf("no API of ns left: HasAPIs %v, flips %d (want 2)", c.HasAPIs("ns"), c.ownFlips["ns"])
	}
}

// recordingQueue records what a handler enqueues.
type recordingQueue struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	added []string
}

func (q *recordingQueue) Add(r reconcile.Request) { q.added = append(q.added, r.Name) }

// AddAfter records as Add: what is enqueued, not when (apipacer_test.go).
func (q *recordingQueue) AddAfter(r reconcile.Request, _ time.Duration) { q.Add(r) }

// take returns the distinct names enqueued since the last call, sorted.
func (q *recordingQueue) take() []string {
	added := q.added
	q.added = nil
	slices.Sort(added)
	return slices.Compact(added)
}

// An API event enqueues only the credentials whose verdict it may change, and two
// controllers sharing the catalogue each enqueue their own, whichever applies an
// event first.
func TestScopeWatchEnqueuesOnlyTheConcernedCredentials(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := latchkeyv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	key := func(name string, scopes ...string) client.Object {
		return &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: latchkeyv1.APIKeySpec{Scopes: scopes}}
	}
	api := func(name string, scopes ...string) *latchkeyv1.API {
		a := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name + "-uid")},
			Spec: latchkeyv1.APISpec{Identifier: "https://" + name}}
		for _, s := range scopes {
			a.Spec.Scopes = append(a.Spec.Scopes, latchkeyv1.APIScope{Name: s})
		}
		return a
	}
	// The fake client plays the manager's cache: each step writes it first, as the
	// informer updates its store before it hands out the event.
	cache := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(key("read", "leads:read"), key("write", "leads:write"), key("star", "leads:*"), key("orders", "orders:read"), key("none")).
		WithIndex(&latchkeyv1.APIKey{}, ScopesField, scopesIndex[*latchkeyv1.APIKey](APIKeyKind{})).
		Build()
	catalogue := &ScopeCatalogue{Reader: cache}
	newHandler := func() (handler.EventHandler, *recordingQueue) {
		r := &CredentialReconciler[*latchkeyv1.APIKey]{Client: cache, Kind: APIKeyKind{}, Catalogue: catalogue}
		return r.scopeWatch(), &recordingQueue{}
	}
	fast, fastQueue := newHandler()
	slow, slowQueue := newHandler()
	all := []string{"none", "orders", "read", "star", "write"}
	expect := func(q *recordingQueue, want []string, step string) {
		t.Helper()
		if got := q.take(); !slices.Equal(got, want) {
			t.Errorf("%s: enqueued %v, want %v", step, got, want)
		}
	}

	// Events of the initial list enqueue nothing: every credential is reconciled at start.
	initial := api("initial", "leads:read")
	must(t, cache.Create(ctx, initial))
	fast.Create(ctx, event.CreateEvent{Object: initial, IsInInitialList: true}, fastQueue)
	expect(fastQueue, nil, "initial list")
	must(t, cache.Delete(ctx, initial))
	fast.Delete(ctx, event.DeleteEvent{Object: initial}, fastQueue)
	expect(fastQueue, all, "the last API deleted")
	slow.Create(ctx, event.CreateEvent{Object: initial, IsInInitialList: true}, slowQueue)
	slow.Delete(ctx, event.DeleteEvent{Object: initial}, slowQueue)
	slowQueue.take()

	leads := api("leads", "leads:read")
	must(t, cache.Create(ctx, leads))
	fast.Create(ctx, event.CreateEvent{Object: leads}, fastQueue)
	expect(fastQueue, all, "the first API")
	slow.Create(ctx, event.CreateEvent{Object: leads}, slowQueue)
	expect(slowQueue, all, "the first API, applied by the other controller first")

	edited := leads.DeepCopy()
	edited.Spec.Scopes = append(edited.Spec.Scopes, latchkeyv1.APIScope{Name: "leads:write"})
	must(t, cache.Update(ctx, edited))
	for _, h := range []struct {
		handler.EventHandler
		q *recordingQueue
	}{{fast, fastQueue}, {slow, slowQueue}} {
		h.Update(ctx, event.UpdateEvent{ObjectOld: leads, ObjectNew: edited}, h.q)
		expect(h.q, []string{"star", "write"}, "leads:write added")
	}
	if !catalogue.Known("ns", "leads:write") {
		t.Error("leads:write is not known")
	}

	orders := api("orders", "orders:read")
	must(t, cache.Create(ctx, orders))
	fast.Create(ctx, event.CreateEvent{Object: orders}, fastQueue)
	expect(fastQueue, []string{"orders"}, "a second API")

	foreign := api("foreign", "leads:read", "orders:read")
	foreign.Namespace = "other"
	must(t, cache.Create(ctx, foreign))
	fast.Create(ctx, event.CreateEvent{Object: foreign}, fastQueue)
	expect(fastQueue, nil, "an API of another namespace that does not accept ns")
	open := api("open", "orders:read")
	open.Namespace, open.Spec.Namespaces = "platform", []string{"*"}
	must(t, cache.Create(ctx, open))
	fast.Create(ctx, event.CreateEvent{Object: open}, fastQueue)
	expect(fastQueue, []string{"orders"}, "an API open to every namespace: its names only, no flip")
	must(t, cache.Delete(ctx, open))
	fast.Delete(ctx, event.DeleteEvent{Object: open}, fastQueue)
	expect(fastQueue, []string{"orders"}, "the open API deleted")
	must(t, cache.Delete(ctx, foreign))
	fast.Delete(ctx, event.DeleteEvent{Object: foreign}, fastQueue)
	expect(fastQueue, nil, "the other namespace's API deleted")

	must(t, cache.Delete(ctx, edited))
	fast.Delete(ctx, event.DeleteEvent{Object: edited}, fastQueue)
	expect(fastQueue, []string{"read", "star", "write"}, "an API deleted")
	must(t, cache.Delete(ctx, orders))
	fast.Delete(ctx, event.DeleteEvent{Object: orders}, fastQueue)
	expect(fastQueue, all, "the last API deleted")

	// The slow controller sees the orders API come and both go only now, when the
	// cache no longer has them: it still learns that the cluster went back to no
	// API, and rechecks all.
	slow.Create(ctx, event.CreateEvent{Object: orders}, slowQueue)
	expect(slowQueue, all, "a lagging controller, after the cluster lost its last API")
	slow.Delete(ctx, event.DeleteEvent{Object: edited}, slowQueue)
	expect(slowQueue, []string{"read", "star", "write"}, "a lagging controller, an API deleted")
	if catalogue.HasAPIs("ns") {
		t.Error("an API deleted from the cache came back into the catalogue")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
