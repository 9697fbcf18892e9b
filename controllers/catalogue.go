package controllers

import (
	"context"
	"slices"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/apirules"
)

// ScopeCatalogue holds the APIs' catalogues of scope names, so that a credential's
// ScopesKnown condition costs a map lookup per scope, not a List.
//
// A credential is checked against the APIs that accept its namespace only: its
// scopes mean something to those, and to no other. An API accepts its own
// namespace by default, the namespaces it lists, or every namespace ("*"). Whether
// a namespace is checked at all (NoCatalogue otherwise) is decided by the APIs *in
// that namespace* that accept it: an API of another tenant, even one open to every
// namespace, cannot turn a namespace's credentials from NoCatalogue into a verdict
// (and so Stalled). It can only hold scopes that count as known there.
//
// Both credential controllers feed it from their own watch on APIs (scopeWatch),
// and either may see an event before or after the other. So an event never writes
// what it carries: Sync copies the API's entry from the manager's cache, which the
// informer updates before it hands out the event, under the catalogue's lock. Each
// entry therefore only moves forward, whichever controller applies an event and
// however many times.
type ScopeCatalogue struct {
	// Reader is the manager's cache of APIs.
	Reader client.Reader

	mu    sync.RWMutex
	byAPI map[types.UID]catalogueEntry
	// own counts, per namespace, the APIs in it that accept it: a namespace is
	// checked only while one does.
	own map[string]int
	// names counts, per accepted namespace (allNamespaces for "*"), the APIs that
	// list each scope name; resources the same per resource ("leads" of "leads:read").
	names, resources map[string]map[string]int
	// ownFlips counts, per namespace, the moves between no own API and some: each
	// moves every credential of the namespace between NoCatalogue and a verdict.
	ownFlips map[string]uint64
}

// allNamespaces keys what APIs open to every namespace hold.
const allNamespaces = "*"

// catalogueEntry is what the catalogue keeps of one API.
type catalogueEntry struct {
	namespace string
	// accepts lists the namespaces whose credentials the API accepts, or
	// [allNamespaces].
	accepts []string
	names   []string
}

// entryOf is the catalogue's view of an API.
func entryOf(api *latchkeyv1.API) catalogueEntry {
	return catalogueEntry{namespace: api.Namespace, accepts: acceptedNamespaces(api), names: catalogueNames(api)}
}

// acceptedNamespaces is an API's spec.namespaces as the authorizer applies it:
// its own namespace when empty, [allNamespaces] when it holds "*".
func acceptedNamespaces(api *latchkeyv1.API) []string {
	switch {
	case len(api.Spec.Namespaces) == 0:
		return []string{api.Namespace}
	case slices.Contains(api.Spec.Namespaces, allNamespaces):
		return []string{allNamespaces}
	}
	return api.Spec.Namespaces
}

func (e catalogueEntry) acceptsOwn() bool {
	return slices.Contains(e.accepts, e.namespace) || slices.Contains(e.accepts, allNamespaces)
}

// Sync brings obj's entry to what the cache holds for it: its scopes, or nothing
// once it is gone (or replaced by a new API of the same name, which has a create
// event of its own). It returns the count of moves between no own API and some in
// obj's namespace.
func (c *ScopeCatalogue) Sync(ctx context.Context, obj client.Object) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	current := &latchkeyv1.API{}
	err := c.Reader.Get(ctx, client.ObjectKeyFromObject(obj), current)
	switch {
	case err == nil && current.UID == obj.GetUID():
		entry := entryOf(current)
		c.set(current.UID, &entry)
	case err == nil || apierrors.IsNotFound(err):
		c.set(obj.GetUID(), nil)
	default:
		return c.ownFlips[obj.GetNamespace()], err
	}
	return c.ownFlips[obj.GetNamespace()], nil
}

// set replaces the entry of one API; nil removes it.
func (c *ScopeCatalogue) set(uid types.UID, entry *catalogueEntry) {
	if c.byAPI == nil {
		c.byAPI, c.own, c.ownFlips = map[types.UID]catalogueEntry{}, map[string]int{}, map[string]uint64{}
		c.names, c.resources = map[string]map[string]int{}, map[string]map[string]int{}
	}
	old, had := c.byAPI[uid]
	namespace := old.namespace
	if entry != nil {
		namespace = entry.namespace // an API's namespace never changes
	}
	hadOwn := c.own[namespace] > 0
	if had {
		c.count(old, -1)
		delete(c.byAPI, uid)
	}
	if entry != nil {
		c.byAPI[uid] = *entry
		c.count(*entry, +1)
	}
	if hadOwn != (c.own[namespace] > 0) {
		c.ownFlips[namespace]++
	}
}

func (c *ScopeCatalogue) count(e catalogueEntry, delta int) {
	adjust := func(m map[string]int, key string) {
		if m[key] += delta; m[key] <= 0 {
			delete(m, key)
		}
	}
	if e.acceptsOwn() {
		adjust(c.own, e.namespace)
	}
	for _, ns := range e.accepts {
		for _, name := range e.names {
			adjust(counter(c.names, ns), name)
			adjust(counter(c.resources, ns), scopeResource(name))
		}
		if len(c.names[ns]) == 0 {
			delete(c.names, ns)
			delete(c.resources, ns)
		}
	}
}

func counter(m map[string]map[string]int, key string) map[string]int {
	if m[key] == nil {
		m[key] = map[string]int{}
	}
	return m[key]
}

// Check reports whether namespace has a catalogue (an API of its own that accepts
// it) and, if so, which of scopes no API that accepts the namespace covers
// (apirules.ScopeCovered: "leads:*" is covered by any leads scope).
func (c *ScopeCatalogue) Check(namespace string, scopes []string) (hasAPIs bool, unknown []string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.own[namespace] == 0 {
		return false, nil
	}
	has := func(name string) bool { return c.names[namespace][name] > 0 || c.names[allNamespaces][name] > 0 }
	hasResource := func(resource string) bool {
		return c.resources[namespace][resource] > 0 || c.resources[allNamespaces][resource] > 0
	}
	for _, scope := range scopes {
		if !apirules.ScopeCovered(scope, has, hasResource) {
			unknown = append(unknown, scope)
		}
	}
	return true, unknown
}

// Known reports whether an API that accepts namespace covers scope, in a
// namespace that has a catalogue.
func (c *ScopeCatalogue) Known(namespace, scope string) bool {
	hasAPIs, unknown := c.Check(namespace, []string{scope})
	return hasAPIs && len(unknown) == 0
}

// HasAPIs reports whether namespace has a catalogue.
func (c *ScopeCatalogue) HasAPIs(namespace string) bool {
	hasAPIs, _ := c.Check(namespace, nil)
	return hasAPIs
}

// catalogueNames lists the scope names of an API's catalogue; never nil, so that
// an API without scopes still counts as an API.
func catalogueNames(api *latchkeyv1.API) []string {
	names := make([]string, 0, len(api.Spec.Scopes))
	for _, s := range api.Spec.Scopes {
		names = append(names, s.Name)
	}
	return names
}

// concerns is what an API event may change: the verdict on the scopes named, for
// the credentials of the namespaces listed (every namespace when all).
type concerns struct {
	names      []string
	namespaces []string
	all        bool
}

// concernsOf compares an API before and after an event (nil: absent): the names
// whose verdict may change, in the namespaces either accepts. When the accepted
// namespaces change, every name of either concerns them.
func concernsOf(before, after *latchkeyv1.API) concerns {
	var c concerns
	var namesBefore, namesAfter, acceptsBefore, acceptsAfter []string
	if before != nil {
		namesBefore, acceptsBefore = catalogueNames(before), acceptedNamespaces(before)
	}
	if after != nil {
		namesAfter, acceptsAfter = catalogueNames(after), acceptedNamespaces(after)
	}
	if slices.Equal(acceptsBefore, acceptsAfter) {
		c.names = changedNames(namesBefore, namesAfter)
	} else {
		c.names = union(namesBefore, namesAfter)
	}
	c.namespaces = union(acceptsBefore, acceptsAfter)
	c.all = slices.Contains(c.namespaces, allNamespaces)
	return c
}

// changedNames lists the scope names in one of before and after but not the other:
// the only scopes whose verdict an edit of one API can change.
func changedNames(before, after []string) []string {
	var changed []string
	for _, name := range before {
		if !slices.Contains(after, name) {
			changed = append(changed, name)
		}
	}
	for _, name := range after {
		if !slices.Contains(before, name) {
			changed = append(changed, name)
		}
	}
	return changed
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, v := range b {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// scopeResource is the resource of a scope: "leads" of "leads:read".
func scopeResource(scope string) string {
	resource, _, _ := strings.Cut(scope, ":")
	return resource
}
