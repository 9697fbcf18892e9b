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
	"github.com/latchkey-dev/latchkey/internal/apis"
)

// ScopeCatalogue holds every API's catalogue of scope names, by API UID, so that a
// credential's ScopesKnown condition costs a map lookup per scope, not a List.
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
	byAPI map[types.UID][]string
	// names counts the APIs that list each scope name; resources counts, per
	// resource ("leads" of "leads:read"), the scopes of it over every API.
	names, resources map[string]int
	// emptyFlips counts the moves between no API and some API: each moves every
	// credential between NoCatalogue and a verdict on its scopes.
	emptyFlips uint64
}

// Sync brings obj's entry to what the cache holds for it: its scopes, or nothing
// once it is gone (or replaced by a new API of the same name, which has a create
// event of its own). It returns the count of moves between no API and some API.
func (c *ScopeCatalogue) Sync(ctx context.Context, obj client.Object) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	current := &latchkeyv1.API{}
	err := c.Reader.Get(ctx, client.ObjectKeyFromObject(obj), current)
	switch {
	case err == nil && current.UID == obj.GetUID():
		c.set(current.UID, catalogueNames(current))
	case err == nil || apierrors.IsNotFound(err):
		c.set(obj.GetUID(), nil)
	default:
		return c.emptyFlips, err
	}
	return c.emptyFlips, nil
}

// set replaces the names of one API; nil removes it.
func (c *ScopeCatalogue) set(uid types.UID, names []string) {
	if c.byAPI == nil {
		c.byAPI, c.names, c.resources = map[types.UID][]string{}, map[string]int{}, map[string]int{}
	}
	hadAPIs := len(c.byAPI) > 0
	for _, name := range c.byAPI[uid] {
		c.count(name, -1)
	}
	delete(c.byAPI, uid)
	if names != nil {
		c.byAPI[uid] = names
		for _, name := range names {
			c.count(name, +1)
		}
	}
	if hadAPIs != (len(c.byAPI) > 0) {
		c.emptyFlips++
	}
}

func (c *ScopeCatalogue) count(name string, delta int) {
	adjust := func(m map[string]int, key string) {
		if m[key] += delta; m[key] <= 0 {
			delete(m, key)
		}
	}
	adjust(c.names, name)
	adjust(c.resources, scopeResource(name))
}

// Check reports whether any API exists and, if so, which of scopes no API's
// catalogue covers (apis.ScopeCovered: "leads:*" is covered by any leads scope).
func (c *ScopeCatalogue) Check(scopes []string) (hasAPIs bool, unknown []string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.byAPI) == 0 {
		return false, nil
	}
	has := func(name string) bool { return c.names[name] > 0 }
	hasResource := func(resource string) bool { return c.resources[resource] > 0 }
	for _, scope := range scopes {
		if !apis.ScopeCovered(scope, has, hasResource) {
			unknown = append(unknown, scope)
		}
	}
	return true, unknown
}

// Known reports whether some API's catalogue covers scope.
func (c *ScopeCatalogue) Known(scope string) bool {
	hasAPIs, unknown := c.Check([]string{scope})
	return hasAPIs && len(unknown) == 0
}

// HasAPIs reports whether any API exists.
func (c *ScopeCatalogue) HasAPIs() bool {
	hasAPIs, _ := c.Check(nil)
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

// scopeResource is the resource of a scope: "leads" of "leads:read".
func scopeResource(scope string) string {
	resource, _, _ := strings.Cut(scope, ":")
	return resource
}
