package tokenserver

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/latchkey-dev/latchkey/internal/accesstoken"
	"github.com/latchkey-dev/latchkey/internal/seal"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
	"github.com/latchkey-dev/latchkey/internal/watchone"
)

// keyRing is one loaded version of the signing-key Secret, ready to use.
type keyRing struct {
	set      signingkeys.Set
	signers  map[string]*jwtSigner // kid -> signer, for the configured algorithm
	verifier *accesstoken.Verifier // every key's public half
	jwks     []byte                // the JWKS document, rendered once
	sealer   *seal.Ring            // the sealing keys: login cookies, authorization codes
}

// Keys holds the current key ring; replicas all read the same Secret.
type Keys struct {
	alg  string
	ring atomic.Pointer[keyRing]
}

// errNoSigningKey means no key of the configured algorithm signs now.
var errNoSigningKey = errors.New("no active signing key")

// Signer returns the signer and kid of the key that signs at now.
func (k *Keys) Signer(now time.Time) (*jwtSigner, string, error) {
	ring := k.ring.Load()
	if ring == nil {
		return nil, "", errNoSigningKey
	}
	key, ok := ring.set.Active(k.alg, now)
	if !ok {
		return nil, "", errNoSigningKey
	}
	return ring.signers[key.KID], key.KID, nil
}

// Ready reports whether a key of the configured algorithm signs at now.
func (k *Keys) Ready(now time.Time) bool {
	_, _, err := k.Signer(now)
	return err == nil
}

// ActiveAge is how long the current signing key has been signing, for the metric.
func (k *Keys) ActiveAge(now time.Time) (time.Duration, bool) {
	ring := k.ring.Load()
	if ring == nil {
		return 0, false
	}
	key, ok := ring.set.Active(k.alg, now)
	return now.Sub(key.ActivatesAt), ok
}

func (k *Keys) current() *keyRing { return k.ring.Load() }

// load replaces the key ring from the Secret's data. On bad data it keeps the ring
// it has: signing with the previous keys beats signing with none.
func (k *Keys) load(secret *corev1.Secret) error {
	set, err := signingkeys.Parse(secret.Data[signingkeys.SecretDataKey])
	if err != nil {
		return err
	}
	public := set.Public()
	ring := &keyRing{set: set, signers: map[string]*jwtSigner{}, verifier: accesstoken.NewVerifier(public)}
	for _, key := range set.Keys {
		if key.Algorithm != k.alg {
			continue
		}
		signer, err := newJWTSigner(key)
		if err != nil {
			return err
		}
		ring.signers[key.KID] = signer
	}
	if ring.jwks, err = json.Marshal(public); err != nil {
		return err
	}
	if ring.sealer, err = seal.NewRing(set); err != nil {
		return err
	}
	k.ring.Store(ring)
	return nil
}

// watchSigningKeys keeps keys loaded from one Secret, read with get and a watch on
// that name only, so RBAC can restrict the token server to it by resourceNames.
func watchSigningKeys(ctx context.Context, cs kubernetes.Interface, namespace, name string, keys *Keys, onError func(error)) toolscache.SharedInformer {
	newList := func() runtime.Object { return &corev1.SecretList{} }
	return watchone.Start(ctx, cs.CoreV1().Secrets(namespace), name, newList, func(secret *corev1.Secret) {
		if err := keys.load(secret); err != nil {
			onError(err)
		}
	})
}

// sealer returns the sealing keys (nil before the first load).
func (k *Keys) sealer() *seal.Ring {
	if ring := k.ring.Load(); ring != nil {
		return ring.sealer
	}
	return nil
}
