package controllers

import (
	"context"
	"fmt"
	"slices"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// The lifecycle writes the Secrets that hold plaintext credentials and records Events.
// Secrets are written with merge patches locked to the cached resourceVersion (issue.go).
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler for its kind, watching the Secrets it controls.
//
// Only what asks for new work triggers a reconcile: a new, changed (spec:
// generation) or deleted object, a rotate or reconcile request (annotations: the
// only ones the cache keeps, cacheTransform), a Secret changed or deleted by
// someone, and a leak report the token server recorded in status.leaks
// (leakReported). The manager's own writes do not: its status patch
// (and the token server's lastUsedAt) leave the generation alone, and the Secret
// it creates is already accounted for (secretRecords.update). That halves the
// reconciles of a new object (make bench, reconcile vs floor). Time-based work is
// requeued by the lifecycle.
//
// With a Catalogue, it also watches APIs: an API edit rechecks the ScopesKnown
// condition of the credentials it concerns (scopeWatch).
func (r *CredentialReconciler[T]) SetupWithManager(mgr ctrl.Manager, name string, options controller.Options) error {
	secrets, err := secretRecordsOf(context.Background(), mgr.GetCache())
	if err != nil {
		return fmt.Errorf("the Secret cache: %w", err)
	}
	r.secrets = secrets
	gvk, err := apiutil.GVKForObject(r.Kind.NewObject(), mgr.GetScheme())
	if err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named(name).
		For(r.Kind.NewObject(), builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
			leakReported))).
		WatchesRawSource(r.secrets.changesOf(gvk.Kind)).
		WithOptions(options)
	if r.Catalogue != nil {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.Kind.NewObject(), ScopesField, scopesIndex(r.Kind)); err != nil {
			return fmt.Errorf("indexing by %s: %w", ScopesField, err)
		}
		b = b.Watches(&latchkeyv1.API{}, r.scopeWatch())
	}
	return b.Complete(r)
}

// leakReported passes an update that brings a leak report the manager has not acted
// on (a record without an outcome): the token server's only status write besides
// lastUsedAt, and one that must be acted on at once.
var leakReported = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		// An APIKey's record never holds a leak report (one makes the entry typed,
		// apikeyrecord.go): only a typed entry can bring one.
		obj, ok := e.ObjectNew.(CredentialObject)
		return ok && slices.ContainsFunc(obj.CredentialStatus().Leaks, func(l latchkeyv1.LeakRecord) bool { return l.Outcome == "" })
	},
}
