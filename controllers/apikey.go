package controllers

import (
	"context"
	"io"

	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// +kubebuilder:rbac:groups=latchkey.dev,resources=apikeys,verbs=get;list;watch
// +kubebuilder:rbac:groups=latchkey.dev,resources=apikeys/status,verbs=get;update;patch
// Only an identity allowed "issue" may change what a credential's status says (config/policy).
// +kubebuilder:rbac:groups=latchkey.dev,resources=apikeys;oauthclients,verbs=issue

// APIKeyKind plugs the API key format into the credential lifecycle.
type APIKeyKind struct {
	// DefaultPrefix is used when spec.prefix is empty (manager flag --default-key-prefix).
	DefaultPrefix string
	// Random is the entropy source (crypto/rand.Reader in production).
	Random io.Reader
}

var _ CredentialKind[*latchkeyv1.APIKey] = APIKeyKind{}

func (APIKeyKind) Name() string                                      { return "API key" }
func (APIKeyKind) NewObject() *latchkeyv1.APIKey                     { return &latchkeyv1.APIKey{} }
func (APIKeyKind) NewList() client.ObjectList                        { return &latchkeyv1.APIKeyList{} }
func (APIKeyKind) Scopes(key *latchkeyv1.APIKey) []string            { return key.Spec.Scopes }
func (APIKeyKind) Prepare(context.Context, *latchkeyv1.APIKey) error { return nil }
func (APIKeyKind) SecretKey() string                                 { return latchkeyv1.APIKeySecretKey }
func (APIKeyKind) Status(k *latchkeyv1.APIKey) any                   { return k.Status }
func (APIKeyKind) PublicData(*latchkeyv1.APIKey) map[string][]byte   { return map[string][]byte{} }
func (APIKeyKind) Secretless(*latchkeyv1.APIKey) bool                { return false }

func (APIKeyKind) Issued(key *latchkeyv1.APIKey, hash string) {
	key.Status.KeyID = credential.KeyID(hash)
}

func (k APIKeyKind) Generate(key *latchkeyv1.APIKey) (string, error) {
	prefix := key.Spec.Prefix
	if prefix == "" {
		prefix = k.DefaultPrefix
	}
	return credential.NewAPIKey(k.Random, prefix, string(environment(key)))
}

// environment is spec.environment, "live" when unset (the schema defaults it;
// this covers objects written before the default existed).
func environment(key *latchkeyv1.APIKey) latchkeyv1.Environment {
	if key.Spec.Environment == "" {
		return latchkeyv1.EnvironmentLive
	}
	return key.Spec.Environment
}
