package controllers

import (
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
)

// The lifecycle writes the Secrets that hold plaintext credentials and records Events.
// Secrets are written with merge patches locked to the cached resourceVersion (issuance.go).
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler for its kind, watching the Secrets it controls.
func (r *CredentialReconciler[T]) SetupWithManager(mgr ctrl.Manager, name string, options controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(name).
		For(r.Kind.NewObject()).
		Owns(&corev1.Secret{}).
		WithOptions(options).
		Complete(r)
}
