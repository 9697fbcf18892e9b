package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// ScopesField indexes the manager's APIKey and OAuthClient caches by spec.scopes,
// so that an API edit reaches only the credentials that carry a scope it changed.
const ScopesField = "spec.scopes"

// setScopesKnown reports whether every scope of obj is in the catalogue of an API
// that accepts obj's namespace. It is advice (usually a typo), not a verdict: Ready
// is untouched, since the credential works; an API simply grants no scope it does
// not list.
func (r *CredentialReconciler[T]) setScopesKnown(obj T) {
	if r.Catalogue == nil {
		return
	}
	hasAPIs, unknown := r.Catalogue.Check(obj.GetNamespace(), r.Kind.Scopes(obj))
	condition := ScopesKnownCondition(hasAPIs, unknown, obj.GetGeneration())
	changed := setCondition(&obj.CredentialStatus().Conditions, condition)
	if changed && condition.Status == metav1.ConditionFalse { // False has one reason: a change is a transition to False
		r.event(obj, corev1.EventTypeWarning, condition.Reason, "%s", condition.Message)
	}
}

// ScopesKnownCondition is the ScopesKnown condition of a credential at
// generation, given whether an API accepts its namespace and which of its scopes
// no such API lists. make bench's reconcile floor writes it as the manager does.
func ScopesKnownCondition(hasAPIs bool, unknown []string, generation int64) metav1.Condition {
	status, reason, message := metav1.ConditionTrue, latchkeyv1.ReasonAllScopesKnown, "every scope is in the catalogue of an API that accepts this namespace"
	switch {
	case !hasAPIs:
		reason, message = latchkeyv1.ReasonNoCatalogue, "no API of this namespace accepts its credentials, so scopes are not checked"
	case len(unknown) == 1:
		status, reason, message = metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope,
			fmt.Sprintf("scope %s is in the catalogue of no API that accepts this namespace", unknown[0])
	case len(unknown) > 1:
		status, reason, message = metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope,
			fmt.Sprintf("scopes %s are in the catalogue of no API that accepts this namespace", strings.Join(unknown, ", "))
	}
	return metav1.Condition{Type: latchkeyv1.ConditionScopesKnown, Status: status, Reason: reason, Message: message, ObservedGeneration: generation}
}

// scopeWatch is the credential controller's handler of API events. It first brings
// the shared catalogue up to date (idempotent: the other credential controller
// applies the same events), then enqueues only the credentials whose ScopesKnown
// verdict the event may change: those of the namespaces the API accepted before or
// accepts now that carry a scope the event added to or removed from its catalogue,
// or that scope's resource wildcard. When the API's own namespace goes from no API
// of its own to some or back, every credential there changes between NoCatalogue
// and a verdict: that rare event enqueues them all. How often one namespace's API
// events may do so is paced (apipacer.go): a tenant's API flipped in a loop
// would otherwise rewrite the status of every credential it concerns, its own
// and other tenants', once per flip.
//
// Events of the initial list enqueue nothing: the controller reconciles every
// credential when it starts, after this handler has seen every API.
func (r *CredentialReconciler[T]) scopeWatch() handler.EventHandler {
	// The catalogue's count of moves between no own API and some, per namespace, as
	// this handler last acted on it: another controller may have applied the event
	// that moved it.
	var mu sync.Mutex
	seenFlips := map[string]uint64{}
	pacer := newAPIPacer() // how often one namespace's API edits may recheck credentials (apipacer.go)
	apply := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], obj client.Object, initial bool, c concerns) {
		flips, err := r.Catalogue.Sync(ctx, obj)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "reading an API into the scope catalogue", "api", obj.GetNamespace()+"/"+obj.GetName())
			return
		}
		ns := obj.GetNamespace()
		mu.Lock()
		flipped := seenFlips[ns] != flips
		seenFlips[ns] = flips
		mu.Unlock()
		if initial || (!flipped && len(c.names) == 0) {
			return
		}
		wait := pacer.wait(ns)
		if flipped {
			r.enqueue(ctx, q, wait, []string{ns})
		}
		namespaces := []string{""} // every namespace
		if !c.all {
			namespaces = c.namespaces
		}
		for _, scope := range c.names {
			r.enqueue(ctx, q, wait, namespaces, client.MatchingFields{ScopesField: scope})
		}
		for _, resource := range uniqueResources(c.names) {
			r.enqueue(ctx, q, wait, namespaces, client.MatchingFields{ScopesField: resource + ":*"})
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if api, ok := e.Object.(*latchkeyv1.API); ok {
				apply(ctx, q, api, e.IsInInitialList, concernsOf(nil, api))
			}
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			before, okBefore := e.ObjectOld.(*latchkeyv1.API)
			after, okAfter := e.ObjectNew.(*latchkeyv1.API)
			if okBefore && okAfter {
				apply(ctx, q, after, false, concernsOf(before, after))
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if api, ok := e.Object.(*latchkeyv1.API); ok {
				apply(ctx, q, api, false, concernsOf(api, nil))
			}
		},
	}
}

// enqueue adds the credentials of the kind in namespaces ("" for every
// namespace) that match to the controller's queue, after wait (0: at once).
// Only names are read, but the lists are of copies (an APIKey's cache entry is
// a record, apikeyrecord.go, which a list without copies cannot hold), so each
// is of one namespace the event concerns: what is copied is what is then
// reconciled, and another tenant's API edits copy none of a namespace they do
// not reach.
func (r *CredentialReconciler[T]) enqueue(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], wait time.Duration, namespaces []string, match ...client.ListOption) {
	for _, namespace := range slices.Compact(slices.Sorted(slices.Values(namespaces))) {
		list := r.Kind.NewList()
		if err := r.List(ctx, list, append([]client.ListOption{client.InNamespace(namespace)}, match...)...); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing credentials to recheck their scopes", "namespace", namespace)
			continue
		}
		_ = meta.EachListItem(list, func(o runtime.Object) error {
			if obj, ok := o.(client.Object); ok {
				if req := (reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)}); wait > 0 {
					q.AddAfter(req, wait)
				} else {
					q.Add(req)
				}
			}
			return nil
		})
	}
}

// scopesIndex is the index function of ScopesField for a kind.
func scopesIndex[T CredentialObject](kind CredentialKind[T]) client.IndexerFunc {
	return func(obj client.Object) []string {
		switch o := obj.(type) {
		case *apiKeyRecord: // an APIKey's cache entry (apikeyrecord.go)
			return o.scopes()
		case T:
			return kind.Scopes(o)
		}
		return nil
	}
}

func uniqueResources(scopes []string) []string {
	var resources []string
	seen := map[string]bool{}
	for _, scope := range scopes {
		if resource := scopeResource(scope); !seen[resource] {
			seen[resource] = true
			resources = append(resources, resource)
		}
	}
	return resources
}
