package authz

import (
	"context"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/latchkey-dev/latchkey/internal/accesstoken"
	"github.com/latchkey-dev/latchkey/internal/watchone"
)

// JWKSDataKey is the ConfigMap data key that holds the JWK Set.
const JWKSDataKey = "jwks.json"

// JWKS holds the verifier built from the JWKS ConfigMap the manager publishes:
// public keys only, so the authorizer never holds a signing key.
type JWKS struct {
	verifier atomic.Pointer[accesstoken.Verifier]
	// CacheSize bounds each verifier's cache of verified tokens (0: none).
	CacheSize int
}

// Verifier returns the current verifier; nil (which verifies nothing) until loaded.
func (j *JWKS) Verifier() *accesstoken.Verifier { return j.verifier.Load() }

// load replaces the verifier. Bad data keeps the previous one: verifying with the
// keys of a minute ago beats refusing every token.
func (j *JWKS) load(cm *corev1.ConfigMap) error {
	v, err := accesstoken.ParseJWKS([]byte(cm.Data[JWKSDataKey]), j.CacheSize)
	if err != nil {
		return err
	}
	j.verifier.Store(v)
	return nil
}

// watchJWKS keeps j loaded from one ConfigMap (get and watch on that name only).
func watchJWKS(ctx context.Context, cs kubernetes.Interface, namespace, name string, j *JWKS, onError func(error)) toolscache.SharedInformer {
	newList := func() runtime.Object { return &corev1.ConfigMapList{} }
	return watchone.Start(ctx, cs.CoreV1().ConfigMaps(namespace), name, newList, func(cm *corev1.ConfigMap) {
		if err := j.load(cm); err != nil {
			onError(err)
		}
	})
}
