package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// JWKSDataKey is the data key of the JWKS ConfigMap: the public JWK Set (RFC 7517)
// of every signing key, byte for byte what the token server serves at
// /oauth2/jwks, for resource servers and gateways that verify tokens offline.
const JWKSDataKey = "jwks.json"

// The ConfigMap rights are in a Role of the operator's namespace, restricted to
// the ConfigMap's name (config/rbac/jwks_role.yaml), not in +kubebuilder:rbac
// markers: those generate the ClusterRole, which would grant them everywhere.

// publishJWKS writes the public half of set into the JWKS ConfigMap, creating it if
// missing and rewriting it if anything but its other metadata differs (a deleted or
// edited ConfigMap is repaired at once: the manager wakes on its events). Labels
// and annotations that others add are kept, so that tools which copy ConfigMaps
// by annotation can pick it up.
func (m *SigningKeyManager) publishJWKS(ctx context.Context, set signingkeys.Set) error {
	// As the token server renders /oauth2/jwks (tokenserver/keys.go): public keys only.
	jwks, err := json.Marshal(set.Public())
	if err != nil {
		return err
	}
	want := map[string]string{JWKSDataKey: string(jwks)}
	key := client.ObjectKey{Namespace: m.Namespace, Name: m.JWKSConfigMap}
	cm := &corev1.ConfigMap{}
	err = m.APIReader.Get(ctx, key, cm) // live: the cache may not have our last write yet
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading ConfigMap %s/%s: %w", key.Namespace, key.Name, err)
	}
	if exists && maps.Equal(cm.Data, want) && len(cm.BinaryData) == 0 && cm.Labels[ManagedByLabel] == ManagedByValue {
		return nil
	}
	cm.Namespace, cm.Name = key.Namespace, key.Name
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels[ManagedByLabel] = ManagedByValue
	cm.Data, cm.BinaryData = want, nil
	if exists {
		err = m.Client.Update(ctx, cm) // locked to the resourceVersion just read
	} else {
		err = m.Client.Create(ctx, cm)
	}
	if err != nil {
		return fmt.Errorf("writing ConfigMap %s/%s: %w", key.Namespace, key.Name, err)
	}
	ctrl.LoggerFrom(ctx).WithName("signing-keys").Info("JWKS published", "configMap", key.Namespace+"/"+key.Name,
		"keys", len(set.Keys), "fingerprint", set.Fingerprint())
	return nil
}

// jwksCacheByObject restricts the manager's ConfigMap cache to the JWKS ConfigMap:
// one namespace, one name (a list or watch with that field selector is what a Role
// limited by resourceNames allows).
func jwksCacheByObject(jwks client.ObjectKey) cache.ByObject {
	return cache.ByObject{
		Namespaces: map[string]cache.Config{jwks.Namespace: {}},
		Field:      fields.OneTermEqualSelector("metadata.name", jwks.Name),
	}
}
