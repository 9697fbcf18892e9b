package controllers

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
// It runs on the elected leader only.
type SigningKeyManager struct {
	Client    client.Client
	APIReader client.Reader
	Namespace string
	Name      string
	Policy    signingkeys.Policy
	Clock     clock.PassiveClock
	Random    io.Reader
	// wake is poked when the Secret changes, so a deleted or edited Secret is repaired at once.
	wake chan struct{}
}

// resync bounds how long the manager sleeps between checks.
const signingKeyResync = time.Minute

// SetupWithManager registers the runnable and a watch on its Secret.
func (m *SigningKeyManager) SetupWithManager(mgr ctrl.Manager) error {
	m.wake = make(chan struct{}, 1)
	informer, err := mgr.GetCache().GetInformer(context.Background(), &corev1.Secret{})
	if err != nil {
		return err
	}
	poke := func(obj any) {
		if s, ok := obj.(*corev1.Secret); ok && (s.Namespace != m.Namespace || s.Name != m.Name) {
			return
		}
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
	if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, obj any) { poke(obj) }, DeleteFunc: poke,
	}); err != nil {
		return err
	}
	return mgr.Add(m)
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

// ensure brings the Secret to the policy's key set and returns when to look again.
func (m *SigningKeyManager) ensure(ctx context.Context) (time.Time, error) {
	secret := &corev1.Secret{}
	err := m.APIReader.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Name}, secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return time.Time{}, err
	}
	var current signingkeys.Set
	if raw := secret.Data[signingkeys.SecretDataKey]; len(raw) > 0 {
		// A corrupt set is never replaced silently: tokens signed by it would stop verifying.
		if current, err = signingkeys.Parse(raw); err != nil {
			return time.Time{}, fmt.Errorf("%w; fix or delete Secret %s/%s", err, m.Namespace, m.Name)
		}
	}
	desired, wake, err := signingkeys.Reconcile(current, m.Policy, m.Clock.Now(), m.Random)
	if err != nil {
		return time.Time{}, err
	}
	data, err := desired.Marshal()
	if err != nil {
		return time.Time{}, err
	}
	if exists && string(secret.Data[signingkeys.SecretDataKey]) == string(data) {
		return wake, nil
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
		return time.Time{}, fmt.Errorf("writing Secret %s/%s: %w", m.Namespace, m.Name, err)
	}
	ctrl.LoggerFrom(ctx).WithName("signing-keys").Info("signing keys updated", "keys", len(desired.Keys), "fingerprint", desired.Fingerprint())
	return wake, nil
}
