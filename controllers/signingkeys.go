package controllers

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// SigningKeyManager keeps the token-signing key set in one Secret of the operator's
// namespace: it creates the keys, rotates them on schedule, publishes each next key
// an interval before it signs, and drops a retired key once its tokens have expired.
// It also publishes the set's public half in a ConfigMap beside it (jwks.go).
// It runs on the elected leader only.
type SigningKeyManager struct {
	Client    client.Client
	APIReader client.Reader
	Namespace string
	Name      string
	// JWKSConfigMap names the ConfigMap, in Namespace, that receives the public JWK
	// Set; empty publishes none.
	JWKSConfigMap string
	Policy        signingkeys.Policy
	Clock         clock.PassiveClock
	Random        io.Reader
	// wake is poked when the Secret or the ConfigMap changes, so that one deleted or
	// edited is repaired at once.
	wake chan struct{}
}

// resync bounds how long the manager sleeps between checks.
const signingKeyResync = time.Minute

// SetupWithManager registers the runnable and watches on its Secret and ConfigMap.
func (m *SigningKeyManager) SetupWithManager(mgr ctrl.Manager) error {
	m.wake = make(chan struct{}, 1)
	if err := m.wakeOn(mgr, &corev1.Secret{}, m.Name); err != nil {
		return err
	}
	if m.JWKSConfigMap != "" {
		// The cache holds this one ConfigMap only (CacheByObject).
		if err := m.wakeOn(mgr, &corev1.ConfigMap{}, m.JWKSConfigMap); err != nil {
			return err
		}
	}
	return mgr.Add(m)
}

// wakeOn pokes the manager on every event of the object of kind obj named name in
// its namespace.
func (m *SigningKeyManager) wakeOn(mgr ctrl.Manager, obj client.Object, name string) error {
	informer, err := mgr.GetCache().GetInformer(context.Background(), obj)
	if err != nil {
		return err
	}
	poke := func(obj any) {
		if tombstone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tombstone.Obj
		}
		// A ConfigMap, or a Secret's record (secretRecord): either names itself.
		if o, err := meta.Accessor(obj); err != nil || o.GetNamespace() != m.Namespace || o.GetName() != name {
			return
		}
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
	_, err = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, obj any) { poke(obj) }, DeleteFunc: poke,
	})
	return err
}

// NeedLeaderElection: only one manager replica writes the keys.
func (m *SigningKeyManager) NeedLeaderElection() bool { return true }

// Start runs until ctx ends, keeping the Secret as the policy wants it.
func (m *SigningKeyManager) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("signing-keys")
	for {
		wait := signingKeyResync
		wake, err := m.ensure(ctx)
		if err != nil {
			log.Error(err, "keeping the signing keys", "secret", m.Namespace+"/"+m.Name)
			wait = 5 * time.Second
		} else if until := wake.Sub(m.Clock.Now()); !wake.IsZero() && until < wait {
			wait = max(until, time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-time.After(wait):
		}
	}
}

// ensure brings the Secret to the policy's key set, then the JWKS ConfigMap to its
// public half, and returns when to look again.
func (m *SigningKeyManager) ensure(ctx context.Context) (time.Time, error) {
	set, wake, err := m.ensureKeys(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if m.JWKSConfigMap != "" {
		if err := m.publishJWKS(ctx, set); err != nil {
			return time.Time{}, err
		}
	}
	return wake, nil
}

// ensureKeys brings the Secret to the policy's key set, and returns the set and
// when to look again.
func (m *SigningKeyManager) ensureKeys(ctx context.Context) (signingkeys.Set, time.Time, error) {
	secret := &corev1.Secret{}
	err := m.APIReader.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Name}, secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return signingkeys.Set{}, time.Time{}, err
	}
	var current signingkeys.Set
	if raw := secret.Data[signingkeys.SecretDataKey]; len(raw) > 0 {
		// A corrupt set is never replaced silently: tokens signed by it would stop verifying.
		if current, err = signingkeys.Parse(raw); err != nil {
			return signingkeys.Set{}, time.Time{}, fmt.Errorf("%w; fix or delete Secret %s/%s", err, m.Namespace, m.Name)
		}
	}
	desired, wake, err := signingkeys.Reconcile(current, m.Policy, m.Clock.Now(), m.Random)
	if err != nil {
		return signingkeys.Set{}, time.Time{}, err
	}
	data, err := desired.Marshal()
	if err != nil {
		return signingkeys.Set{}, time.Time{}, err
	}
	if exists && string(secret.Data[signingkeys.SecretDataKey]) == string(data) {
		return desired, wake, nil
	}
	secret.ObjectMeta = metav1.ObjectMeta{
		Namespace: m.Namespace, Name: m.Name,
		ResourceVersion: secret.ResourceVersion, UID: secret.UID,
		Labels: map[string]string{ManagedByLabel: ManagedByValue},
	}
	secret.Type = corev1.SecretTypeOpaque
	secret.Data = map[string][]byte{signingkeys.SecretDataKey: data}
	if exists {
		err = m.Client.Update(ctx, secret)
	} else {
		err = m.Client.Create(ctx, secret)
	}
	if err != nil {
		return signingkeys.Set{}, time.Time{}, fmt.Errorf("writing Secret %s/%s: %w", m.Namespace, m.Name, err)
	}
	ctrl.LoggerFrom(ctx).WithName("signing-keys").Info("signing keys updated", "keys", len(desired.Keys), "fingerprint", desired.Fingerprint())
	return desired, wake, nil
}
