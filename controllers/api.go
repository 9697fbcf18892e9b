package controllers

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/apirules"
)

// The manager reads every API (to find who holds an identifier or a host, and for
// the scope catalogue) and reports in status whether each one is served.
// +kubebuilder:rbac:groups=latchkey.dev,resources=apis,verbs=get;list;watch
// +kubebuilder:rbac:groups=latchkey.dev,resources=apis/status,verbs=get;update;patch

// Field indexes of the manager's API cache: the other claimants of an identifier
// or a host are one indexed lookup away.
const (
	APIIdentifierField = "spec.identifier"
	APIHostsField      = "spec.hosts"
)

// APIReconciler reports whether each API is served: Ready=True (Accepted) when it
// holds its identifier and every one of its hosts, else Ready=False
// (IdentifierConflict) naming an API that is not newer and claims one of them (the
// older holder; or, created in the same second, a claimant that keeps both from
// holding it). Who holds what is apirules.NotNewer, the rule the authorizer applies, so
// status says what the authorizer does.
type APIReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// Reconcile computes the status from the cache; finalize writes it if it changed.
func (r *APIReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	api := &latchkeyv1.API{}
	if err := r.Get(ctx, req.NamespacedName, api); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !api.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // its deletion re-reconciles the APIs it shares claims with
	}
	before := api.DeepCopy()

	rival, claim, err := r.notNewerClaimant(ctx, api)
	if err != nil {
		return ctrl.Result{}, err
	}
	if rival == nil {
		setReadyCondition(&api.Status.Conditions, api.Generation, metav1.ConditionTrue, latchkeyv1.ReasonAccepted,
			fmt.Sprintf("this API holds identifier %s and every host it lists", api.Spec.Identifier))
	} else {
		note := fmt.Sprintf("%s is held by API %s/%s, which is older; this API is not served", claim, rival.Namespace, rival.Name)
		if apirules.NotNewer(api, rival) {
			note = fmt.Sprintf("%s is also claimed by API %s/%s, created in the same second: neither is served", claim, rival.Namespace, rival.Name)
		}
		if setReadyCondition(&api.Status.Conditions, api.Generation, metav1.ConditionFalse, latchkeyv1.ReasonIdentifierConflict, note) {
			r.Recorder.Eventf(api, nil, corev1.EventTypeWarning, latchkeyv1.ReasonIdentifierConflict, "Reconcile", "%s", note)
		}
	}
	api.Status.ScopeCount = int32(len(api.Spec.Scopes))
	api.Status.RuleCount = int32(len(api.Spec.Rules))
	status := statusWriter[*latchkeyv1.API]{client: r.Client, fields: apiStatus}
	return ctrl.Result{}, status.finalize(ctx, before, api, pending{}, nil)
}

// apiStatus is the status the API reconciler writes: all of it.
func apiStatus(api *latchkeyv1.API) statusFields {
	return statusFields{conditions: &api.Status.Conditions, observedGeneration: &api.Status.ObservedGeneration, compared: &api.Status}
}

// notNewerClaimant returns another API that claims api's identifier or one of its
// hosts and is not newer (apirules.NotNewer): api then holds that claim not. It also
// says which claim ("host api.example.com"). Nil when api holds every claim. Of
// several, it names, for the first claim in conflict (the identifier first), the
// oldest claimant, and between claimants of the same second the first by
// namespace/name: the message stays the same from one reconcile to the next.
func (r *APIReconciler) notNewerClaimant(ctx context.Context, api *latchkeyv1.API) (*latchkeyv1.API, string, error) {
	type claim struct{ field, value, what string }
	claims := []claim{{APIIdentifierField, api.Spec.Identifier, "identifier " + api.Spec.Identifier}}
	for _, host := range api.Spec.Hosts {
		claims = append(claims, claim{APIHostsField, host, "host " + host})
	}
	for _, c := range claims {
		var claimants latchkeyv1.APIList
		if err := r.List(ctx, &claimants, client.MatchingFields{c.field: c.value}); err != nil {
			return nil, "", fmt.Errorf("listing the APIs with %s: %w", c.what, err)
		}
		var rival *latchkeyv1.API
		for i := range claimants.Items {
			other := &claimants.Items[i]
			if other.UID == api.UID || !apirules.NotNewer(other, api) {
				continue
			}
			if rival == nil || !apirules.NotNewer(rival, other) ||
				(apirules.NotNewer(other, rival) && other.Namespace+"/"+other.Name < rival.Namespace+"/"+rival.Name) {
				rival = other
			}
		}
		if rival != nil {
			return rival, c.what, nil
		}
	}
	return nil, "", nil
}

// SetupWithManager indexes APIs by identifier and host, and registers the
// reconciler: an API is reconciled when its spec (or a label or annotation, to
// nudge it) changes, and when another API that shares a claim with it comes, goes
// or changes its claims (claimPeers). Its own status writes trigger nothing.
func (r *APIReconciler) SetupWithManager(mgr ctrl.Manager, options controller.Options) error {
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(context.Background(), &latchkeyv1.API{}, APIIdentifierField, apiIdentifierIndex); err != nil {
		return fmt.Errorf("indexing APIs by identifier: %w", err)
	}
	if err := indexer.IndexField(context.Background(), &latchkeyv1.API{}, APIHostsField, apiHostsIndex); err != nil {
		return fmt.Errorf("indexing APIs by host: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("api").
		For(&latchkeyv1.API{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Watches(&latchkeyv1.API{}, r.claimPeers()).
		WithOptions(options).
		Complete(r)
}

// claimPeers enqueues, for an API that is created, deleted or changes its
// identifier or hosts, every other API that claims the same identifier or a same
// host, before the change and after it: what one API takes or lets go of can
// change who holds it. The old object's claims matter as much as the new ones: an
// identifier it gave up goes to the next claimant.
func (r *APIReconciler) claimPeers() handler.EventHandler {
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if !e.IsInInitialList { // at start every API is reconciled anyway
				r.enqueueClaimants(ctx, q, e.Object)
			}
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			before, okBefore := e.ObjectOld.(*latchkeyv1.API)
			after, okAfter := e.ObjectNew.(*latchkeyv1.API)
			if okBefore && okAfter && !sameClaims(before, after) {
				r.enqueueClaimants(ctx, q, before, after)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.enqueueClaimants(ctx, q, e.Object)
		},
	}
}

// enqueueClaimants enqueues the APIs that claim an identifier or a host of objs.
func (r *APIReconciler) enqueueClaimants(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], objs ...client.Object) {
	for _, obj := range objs {
		api, ok := obj.(*latchkeyv1.API)
		if !ok {
			continue
		}
		lookups := []client.MatchingFields{{APIIdentifierField: api.Spec.Identifier}}
		for _, host := range api.Spec.Hosts {
			lookups = append(lookups, client.MatchingFields{APIHostsField: host})
		}
		for _, lookup := range lookups {
			var claimants latchkeyv1.APIList
			if err := r.List(ctx, &claimants, lookup, client.UnsafeDisableDeepCopy); err != nil {
				ctrl.LoggerFrom(ctx).Error(err, "listing the APIs that share a claim", "api", api.Namespace+"/"+api.Name)
				continue
			}
			for i := range claimants.Items {
				q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&claimants.Items[i])})
			}
		}
	}
}

// sameClaims reports whether two versions of an API claim the same identifier and hosts.
func sameClaims(a, b *latchkeyv1.API) bool {
	if a.Spec.Identifier != b.Spec.Identifier || len(a.Spec.Hosts) != len(b.Spec.Hosts) {
		return false
	}
	for _, host := range a.Spec.Hosts {
		if !slices.Contains(b.Spec.Hosts, host) {
			return false
		}
	}
	return true
}

func apiIdentifierIndex(obj client.Object) []string {
	if api, ok := obj.(*latchkeyv1.API); ok && api.Spec.Identifier != "" {
		return []string{api.Spec.Identifier}
	}
	return nil
}

func apiHostsIndex(obj client.Object) []string {
	if api, ok := obj.(*latchkeyv1.API); ok {
		return api.Spec.Hosts
	}
	return nil
}
