package tokenserver

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/latchkey-dev/latchkey/internal/accesstoken"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// keyRing is one loaded version of the signing-key Secret, ready to use.
type keyRing struct {
	set      signingkeys.Set
	signers  map[string]*jwtSigner // kid -> signer, for the configured algorithm
	verifier *accesstoken.Verifier // every key's public half
	jwks     []byte                // the JWKS document, rendered once
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
	k.ring.Store(ring)
	return nil
}

// watchSigningKeys keeps keys loaded from one Secret, read with get and a watch on
// that name only, so RBAC can restrict the token server to it by resourceNames.
func watchSigningKeys(ctx context.Context, cs kubernetes.Interface, namespace, name string, keys *Keys, onError func(error)) toolscache.SharedInformer {
	byName := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
			secret, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return &corev1.SecretList{}, nil
			}
			if err != nil {
				return nil, err
			}
			return &corev1.SecretList{ListMeta: metav1.ListMeta{ResourceVersion: secret.ResourceVersion}, Items: []corev1.Secret{*secret}}, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = byName
			return cs.CoreV1().Secrets(namespace).Watch(ctx, opts)
		},
	}
	informer := toolscache.NewSharedInformer(lw, &corev1.Secret{}, 0)
	load := func(obj any) {
		if secret, ok := obj.(*corev1.Secret); ok && secret.Name == name {
			if err := keys.load(secret); err != nil {
				onError(err)
			}
		}
	}
	_, _ = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    load,
		UpdateFunc: func(_, obj any) { load(obj) },
	})
	go informer.RunWithContext(ctx)
	return informer
}
