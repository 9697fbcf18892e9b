package controllers

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

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
	// IssuanceKey locates the issuance key's Secret (see IssuanceKeySource).
	IssuanceKey IssuanceKeyOptions
	// Client overrides the manager's client (tests wrap it to inject failures).
	Client client.Client
}

// IssuanceKeyOptions say where the issuance key lives.
type IssuanceKeyOptions struct {
	Namespace, SecretName string
}

// SigningKeyOptions say where the signing keys live and how they rotate.
type SigningKeyOptions struct {
	Namespace, SecretName string
	// JWKSConfigMap names the ConfigMap, in Namespace, that receives the keys' public
	// JWK Set; empty publishes none. Pass the same name to CacheByObject.
	JWKSConfigMap string
	Policy        signingkeys.Policy
}

// SetupAll registers every controller of the manager.
func SetupAll(mgr ctrl.Manager, o Options) error {
	c := o.Client
	if c == nil {
		c = mgr.GetClient()
	}
	if o.IssuanceKey.Namespace == "" || o.IssuanceKey.SecretName == "" {
		return fmt.Errorf("the issuance key's namespace and Secret name are required")
	}
	if o.Controller.NewQueue == nil {
		o.Controller.NewQueue = NewFairQueue // one tenant's burst holds no other's work behind it
	}
	keys := &IssuanceKeySource{Client: c, APIReader: mgr.GetAPIReader(),
		Namespace: o.IssuanceKey.Namespace, Name: o.IssuanceKey.SecretName, Random: o.Random}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &latchkeyv1.OAuthClient{}, ClientIDField, ClientIDIndex); err != nil {
		return fmt.Errorf("indexing OAuthClients by client_id: %w", err)
	}
	recorder := mgr.GetEventRecorder("latchkey-manager")
	apiReconciler := &APIReconciler{Client: c, Recorder: recorder}
	if err := apiReconciler.SetupWithManager(mgr, o.Controller); err != nil {
		return fmt.Errorf("setting up the API controller: %w", err)
	}
	// One catalogue, fed by both credential controllers' API watches.
	catalogue := &ScopeCatalogue{Reader: mgr.GetCache()}
	apiKeys := &CredentialReconciler[*latchkeyv1.APIKey]{
		Client:    c,
		APIReader: mgr.GetAPIReader(),
		Recorder:  recorder,
		Clock:     o.Clock,
		Kind:      APIKeyKind{DefaultPrefix: o.DefaultKeyPrefix, Random: o.Random},
		Keys:      keys,
		Catalogue: catalogue,
	}
	if err := apiKeys.SetupWithManager(mgr, "apikey", o.Controller); err != nil {
		return fmt.Errorf("setting up the APIKey controller: %w", err)
	}
	oauthClients := &CredentialReconciler[*latchkeyv1.OAuthClient]{
		Client:    c,
		APIReader: mgr.GetAPIReader(),
		Recorder:  recorder,
		Clock:     o.Clock,
		Kind: OAuthClientKind{IssuerURL: o.IssuerURL, TokenURL: o.TokenURL, Random: o.Random,
			Keys: keys, Clients: mgr.GetClient()},
		Keys:      keys,
		Catalogue: catalogue,
	}
	if err := oauthClients.SetupWithManager(mgr, "oauthclient", o.Controller); err != nil {
		return fmt.Errorf("setting up the OAuthClient controller: %w", err)
	}
	// Each credential's state, read from the cache at scrape time (metrics.go).
	if err := metrics.Registry.Register(&CredentialCollector{Reader: mgr.GetCache()}); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) { // a second manager in one test process
			return fmt.Errorf("registering the credential metrics: %w", err)
		}
	}
	grants := &OAuthGrantReconciler{Client: c, Recorder: recorder}
	if err := grants.SetupWithManager(mgr, o.Controller); err != nil {
		return fmt.Errorf("setting up the OAuthGrant controller: %w", err)
	}
	if o.SigningKeys == nil {
		return nil
	}
	signingKeys := &SigningKeyManager{
		Client: c, APIReader: mgr.GetAPIReader(),
		Namespace: o.SigningKeys.Namespace, Name: o.SigningKeys.SecretName, JWKSConfigMap: o.SigningKeys.JWKSConfigMap,
		Policy: o.SigningKeys.Policy, Clock: o.Clock, Random: o.Random,
	}
	if err := signingKeys.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the signing key manager: %w", err)
	}
	return nil
}
