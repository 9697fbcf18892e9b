package controllers

import (
	"context"
	"fmt"
	"io"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/latchkey-dev/latchkey/internal/issuanceproof"
)

// IssuanceKeyDataKey is the data key of the Secret that holds the issuance key.
const IssuanceKeyDataKey = "issuance-key"

// IssuanceKeySource loads the issuance key, the HMAC key of the issuance proof
// (internal/issuanceproof), from a Secret in the operator's namespace, and creates that
// Secret the first time it is needed. Only the manager may read it: the token
// server's RBAC names the signing-key Secret alone, and tenants have no access to
// the operator's namespace.
//
// The key only matters for credentials written but not yet recorded in status (a
// crash in between) and for client_ids not yet recorded: deleting the Secret
// rotates it, and at worst such a credential is reissued instead of adopted.
type IssuanceKeySource struct {
	Client    client.Client // creates the Secret
	APIReader client.Reader // reads it: the Secret cache holds records, not data
	Namespace string
	Name      string
	Random    io.Reader

	mu  sync.Mutex
	key *issuanceproof.Key
}

// Get returns the key, loading or creating it on first use.
func (s *IssuanceKeySource) Get(ctx context.Context) (*issuanceproof.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != nil {
		return s.key, nil
	}
	name := client.ObjectKey{Namespace: s.Namespace, Name: s.Name}
	secret := &corev1.Secret{}
	err := s.APIReader.Get(ctx, name, secret)
	if apierrors.IsNotFound(err) {
		raw, genErr := issuanceproof.NewKey(s.Random)
		if genErr != nil {
			return nil, genErr
		}
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: map[string]string{ManagedByLabel: ManagedByValue}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{IssuanceKeyDataKey: raw},
		}
		err = s.Client.Create(ctx, secret)
		if apierrors.IsAlreadyExists(err) { // another replica was first: use its key
			err = s.APIReader.Get(ctx, name, secret)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading the issuance key from Secret %s: %w", name, err)
	}
	key, err := issuanceproof.ParseKey(secret.Data[IssuanceKeyDataKey])
	if err != nil {
		return nil, fmt.Errorf("Secret %s: %w; delete it to have a new key generated", name, err)
	}
	ctrl.LoggerFrom(ctx).Info("issuance key loaded", "secret", name.String(), "keyID", key.ID())
	s.key = key
	return key, nil
}
