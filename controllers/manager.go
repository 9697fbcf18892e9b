package controllers

import (
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// Options configure every controller of the manager.
type Options struct {
	DefaultKeyPrefix string
	Random           io.Reader
	Clock            clock.PassiveClock
	Controller       controller.Options
	// Client overrides the manager's client (tests wrap it to inject failures).
	Client client.Client
}

// CacheByObject restricts the Secret cache to the Secrets the operator labelled.
func CacheByObject() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{ManagedByLabel: ManagedByValue})},
	}
}

// SetupAll registers every controller of the manager.
func SetupAll(mgr ctrl.Manager, o Options) error {
	c := o.Client
	if c == nil {
		c = mgr.GetClient()
	}
	apiKeys := &CredentialReconciler[*latchkeyv1.APIKey]{
		Client:    c,
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("latchkey-manager"),
		Clock:     o.Clock,
		Kind:      APIKeyKind{DefaultPrefix: o.DefaultKeyPrefix, Random: o.Random},
	}
	if err := apiKeys.SetupWithManager(mgr, "apikey", o.Controller); err != nil {
		return fmt.Errorf("setting up the APIKey controller: %w", err)
	}
	return nil
}
