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
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// Options configure every controller of the manager.
type Options struct {
	DefaultKeyPrefix string
	// IssuerURL and TokenURL are written into OAuthClient Secrets.
	IssuerURL, TokenURL string
	Random              io.Reader
	Clock               clock.PassiveClock
	Controller          controller.Options
	// SigningKeys configures the token-signing key set; nil leaves it to another manager.
	SigningKeys *SigningKeyOptions
	// Client overrides the manager's client (tests wrap it to inject failures).
	Client client.Client
}

// SigningKeyOptions say where the signing keys live and how they rotate.
type SigningKeyOptions struct {
	Namespace, SecretName string
	Policy                signingkeys.Policy
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
	recorder := mgr.GetEventRecorder("latchkey-manager")
	apiKeys := &CredentialReconciler[*latchkeyv1.APIKey]{
		Client:    c,
		APIReader: mgr.GetAPIReader(),
		Recorder:  recorder,
		Clock:     o.Clock,
		Kind:      APIKeyKind{DefaultPrefix: o.DefaultKeyPrefix, Random: o.Random},
	}
	if err := apiKeys.SetupWithManager(mgr, "apikey", o.Controller); err != nil {
		return fmt.Errorf("setting up the APIKey controller: %w", err)
	}
	oauthClients := &CredentialReconciler[*latchkeyv1.OAuthClient]{
		Client:    c,
		APIReader: mgr.GetAPIReader(),
		Recorder:  recorder,
		Clock:     o.Clock,
		Kind:      OAuthClientKind{IssuerURL: o.IssuerURL, TokenURL: o.TokenURL, Random: o.Random},
	}
	if err := oauthClients.SetupWithManager(mgr, "oauthclient", o.Controller); err != nil {
		return fmt.Errorf("setting up the OAuthClient controller: %w", err)
	}
	if o.SigningKeys == nil {
		return nil
	}
	keys := &SigningKeyManager{
		Client: c, APIReader: mgr.GetAPIReader(),
		Namespace: o.SigningKeys.Namespace, Name: o.SigningKeys.SecretName,
		Policy: o.SigningKeys.Policy, Clock: o.Clock, Random: o.Random,
	}
	if err := keys.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the signing key manager: %w", err)
	}
	return nil
}
