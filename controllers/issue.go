package controllers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/issuanceproof"
)

// errSecretAppeared: the Secret was created while the cache said there was none.
var errSecretAppeared = errors.New("the Secret exists although the cache has none")

// errSecretChanged: the Secret changed between the read a decision was made on and the write.
var errSecretChanged = errors.New("the Secret changed while it was being updated; deciding again")

// secretState is how the Secret's content relates to what status accepts.
type secretState int

const (
	secretMissing  secretState = iota
	secretCurrent              // holds the credential status accepts as current
	secretNewer                // holds a credential this manager issued for this object after status was last written: adopt it
	secretModified             // holds anything else: changed by someone, or stale in our cache
	secretLeaked               // holds a credential withdrawn because it was reported public: replace it
)

// classify tells what a Secret (in digest form) holds, and the hash of its credential.
//
// Only secretNewer leads to adoption, and it needs the issuance proof: a
// credential with a newer serial is adopted only if this manager wrote it for
// this very object (kind, namespace, name, UID) and serial. A tenant can write
// anything into its Secret, but not that proof.
func (r *CredentialReconciler[T]) classify(ctx context.Context, obj T, secret *corev1.Secret) (secretState, string, error) {
	if secret == nil {
		return secretMissing, "", nil
	}
	if secret.DeletionTimestamp != nil {
		return secretModified, "", nil // on its way out (someone's finalizer holds it): never adopt from it
	}
	digest := secret.Data[r.Kind.SecretKey()]
	if len(digest) != sha256.Size {
		return secretModified, "", nil
	}
	hash := credential.HashOfDigest(digest)
	status := obj.CredentialStatus()
	serial := secretSerial(secret)
	switch {
	case serial == status.Serial && leakedHashRevoked(obj, hash):
		return secretLeaked, hash, nil
	case serial == status.Serial && len(status.Credentials) > 0 && status.Credentials[0].Hash == hash:
		return secretCurrent, hash, nil
	case serial > status.Serial:
		key, err := r.Keys.Get(ctx)
		if err != nil {
			return 0, "", err
		}
		if key.Verify(r.claim(obj, serial, hash), secret.Annotations[latchkeyv1.IssuanceProofAnnotation]) {
			return secretNewer, hash, nil
		}
	}
	return secretModified, "", nil
}

// claim is what the issuance proof of obj's credential binds together.
func (r *CredentialReconciler[T]) claim(obj T, serial int64, hash string) issuanceproof.Claim {
	return issuanceproof.Claim{Kind: r.Kind.Name(), Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(), Serial: serial, Hash: hash}
}

// ensureCredential makes the owned Secret hold a credential whose hash status
// accepts: it issues, adopts, rotates or reissues as the observed state requires.
// On return without error, status.Credentials[0] is the credential in the Secret.
func (r *CredentialReconciler[T]) ensureCredential(ctx context.Context, obj T, state observed) error {
	secret := state.secret
	kind, hash, err := r.classify(ctx, obj, secret)
	if err != nil {
		return err
	}
	if kind == secretModified {
		// The cache may lag behind our own last write; decide on the live object.
		if secret, err = r.getLiveSecret(ctx, obj); err != nil {
			return err
		}
		if kind, hash, err = r.classify(ctx, obj, secret); err != nil {
			return err
		}
	}
	status := obj.CredentialStatus()
	rotation := rotationTriggers.evaluate(obj, state.now)

	switch kind {
	case secretNewer:
		// Adopt what an interrupted run wrote. Whether it was issued before or after
		// the object's rotate request is not known (nothing a tenant could write in
		// the Secret is trusted for that), so the request is not counted as
		// answered: it stays due and the next reconcile (nextEvent) rotates, once
		// this status has recorded the adopted credential. Rotating it away now,
		// before that, would drop a credential the Secret held without a grace
		// period. At worst a crash costs one extra rotation.
		r.accept(obj, hash, secretSerial(secret), state.now, rotation.due, obj.CredentialStatus().LastRotateRequest)
		return r.ensureSecretShape(ctx, obj, secret)
	case secretCurrent:
		if !rotation.due {
			return r.ensureSecretShape(ctx, obj, secret)
		}
		if err := r.issue(ctx, obj, secret, state.now, true); err != nil {
			return err
		}
		r.event(obj, corev1.EventTypeNormal, "Rotated", "Rotated %s: %s is current; the previous one is accepted for %s",
			rotation.why, credential.KeyID(status.Credentials[0].Hash), gracePeriod(obj))
		return nil
	case secretLeaked:
		// Its credential is withdrawn already (handleLeaks, with a Warning Event);
		// any other still in its grace period stays, as after a rotation.
		return r.issue(ctx, obj, secret, state.now, true)
	case secretModified:
		r.event(obj, corev1.EventTypeWarning, "SecretModified",
			"Secret %s does not hold a %s this operator issued for it; issuing a new one", secret.Name, r.Kind.Name())
	case secretMissing:
		if len(status.Credentials) > 0 {
			r.event(obj, corev1.EventTypeWarning, "SecretDeleted",
				"Secret %s was deleted; issuing a new %s and dropping the old one", obj.SecretName(), r.Kind.Name())
		}
	}
	status.Credentials = nil // whatever the Secret held before is gone: never accept it again
	// No Event for an issuance: Ready=True (reason Issued, naming the key ID) says
	// it, and at scale one Event per new object was a third of the manager's writes
	// (make bench). Events are kept for what a user must notice: rotation,
	// tampering, revocation, expiry, refusals.
	return r.issue(ctx, obj, secret, state.now, false)
}

// issue generates a credential, writes it to the Secret first and records its hash
// second: if the process dies in between, the next reconcile adopts it (secretNewer).
// existing is the Secret in digest form, or nil.
func (r *CredentialReconciler[T]) issue(ctx context.Context, obj T, existing *corev1.Secret, now time.Time, rotation bool) error {
	plaintext, err := r.Kind.Generate(obj)
	if err != nil {
		return fmt.Errorf("generating %s: %w", r.Kind.Name(), err)
	}
	hash := credential.Hash(plaintext)
	serial := obj.CredentialStatus().Serial + 1
	if err := r.writeSecret(ctx, obj, existing, []byte(plaintext), serial, hash); err != nil {
		return err
	}
	r.accept(obj, hash, serial, now, rotation, obj.GetAnnotations()[latchkeyv1.RotateAnnotation])
	return nil
}

// accept makes hash the current credential, issued under the rotate request
// request. On a rotation the previous current one stays accepted for the grace
// period; otherwise nothing else is kept.
func (r *CredentialReconciler[T]) accept(obj T, hash string, serial int64, now time.Time, rotation bool, request string) {
	status := obj.CredentialStatus()
	issuedAt := metav1.NewTime(now.Truncate(time.Second))
	accepted := []latchkeyv1.CredentialHash{{Hash: hash, Serial: serial, IssuedAt: issuedAt}}
	if rotation {
		notAfter := metav1.NewTime(now.Add(gracePeriod(obj)).Truncate(time.Second))
		for _, c := range status.Credentials {
			if c.Hash == hash {
				continue
			}
			if c.NotAfter == nil { // the one being replaced
				c.NotAfter = &notAfter
			}
			accepted = append(accepted, c)
		}
		status.LastRotatedAt = &issuedAt
	}
	status.Credentials = accepted
	status.Serial = serial
	// A rotate request present at issuance is satisfied by that issuance.
	status.LastRotateRequest = request
	r.Kind.Issued(obj, hash)
}

// ensureSecretShape keeps labels, annotations, owner and the public data as
// desired, without touching the credential, which status.Credentials[0] accepts.
func (r *CredentialReconciler[T]) ensureSecretShape(ctx context.Context, obj T, secret *corev1.Secret) error {
	current := obj.CredentialStatus().Credentials[0]
	desired, err := r.desiredSecret(ctx, obj, secret.DeepCopy(), r.digestData(obj, secret.Data[r.Kind.SecretKey()]), current.Serial, current.Hash)
	if err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(desired, secret) {
		return nil
	}
	return r.writeSecret(ctx, obj, secret, nil, current.Serial, current.Hash)
}

// writeSecret makes the Secret hold the credential value (nil: keep the one it holds, whose
// hash is hash) under serial, with everything else as desired. existing is the
// Secret in digest form, or nil to create it.
func (r *CredentialReconciler[T]) writeSecret(ctx context.Context, obj T, existing *corev1.Secret, value []byte, serial int64, hash string) error {
	if existing == nil {
		secret, err := r.desiredSecret(ctx, obj, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: obj.GetNamespace(), Name: obj.SecretName()}},
			r.data(obj, value), serial, hash)
		if err != nil {
			return err
		}
		err = r.Create(ctx, secret)
		if apierrors.IsAlreadyExists(err) {
			return errSecretAppeared
		}
		if err != nil {
			return fmt.Errorf("writing Secret %s: %w", secret.Name, err)
		}
		return nil
	}
	if trimmed(existing) {
		return r.updateLiveSecret(ctx, obj, value, serial, hash)
	}
	if value == nil {
		// existing holds the digest: patching it with the same value leaves the credential as it is.
		value = existing.Data[r.Kind.SecretKey()]
	}
	desired, err := r.desiredSecret(ctx, obj, existing.DeepCopy(), r.data(obj, value), serial, hash)
	if err != nil {
		return err
	}
	// A merge patch against existing (rebuilt from its record, or read live), locked to
	// its resourceVersion: only what differs is sent, and nothing is written over a
	// change we have not seen.
	if err := r.Patch(ctx, desired, client.MergeFromWithOptions(existing, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("writing Secret %s: %w", existing.Name, err)
	}
	return nil
}

// updateLiveSecret writes a Secret whose digest form is partial (trimmed), from a full live read.
func (r *CredentialReconciler[T]) updateLiveSecret(ctx context.Context, obj T, value []byte, serial int64, hash string) error {
	live := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: obj.SecretName()}, live); err != nil {
		return fmt.Errorf("reading Secret %s: %w", obj.SecretName(), err)
	}
	if value == nil {
		value = live.Data[r.Kind.SecretKey()]
		if credential.Hash(string(value)) != hash {
			return errSecretChanged
		}
	}
	desired, err := r.desiredSecret(ctx, obj, live, r.data(obj, value), serial, hash)
	if err != nil {
		return err
	}
	if err := r.Update(ctx, desired); err != nil {
		return fmt.Errorf("updating Secret %s: %w", live.Name, err)
	}
	return nil
}

// data is the whole data of the Secret: the kind's public values and the credential.
func (r *CredentialReconciler[T]) data(obj T, credential []byte) map[string][]byte {
	data := r.Kind.PublicData(obj)
	data[r.Kind.SecretKey()] = credential
	return data
}

// digestData is data in digest form, given the credential's digest.
func (r *CredentialReconciler[T]) digestData(obj T, credentialDigest []byte) map[string][]byte {
	data := r.Kind.PublicData(obj)
	for k, v := range data {
		data[k] = digestOf(v)
	}
	data[r.Kind.SecretKey()] = credentialDigest
	return data
}

// desiredSecret writes the desired content into secret and returns it. Labels and
// annotations from spec.secretTemplate are merged over whatever else is there, and
// those a previous template put there are removed (applySecretTemplate); ours come
// last, with the issuance proof of the credential whose hash is hash.
func (r *CredentialReconciler[T]) desiredSecret(ctx context.Context, obj T, secret *corev1.Secret, data map[string][]byte, serial int64, hash string) (*corev1.Secret, error) {
	key, err := r.Keys.Get(ctx)
	if err != nil {
		return nil, err
	}
	if secret.Labels == nil {
		secret.Labels = map[string]string{}
	}
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	applySecretTemplate(secret, obj.Lifecycle().SecretTemplate)
	secret.Labels[ManagedByLabel] = ManagedByValue
	secret.Annotations[latchkeyv1.SerialAnnotation] = strconv.FormatInt(serial, 10)
	secret.Annotations[latchkeyv1.IssuanceProofAnnotation] = key.Proof(r.claim(obj, serial, hash))
	if secret.Type == "" {
		secret.Type = corev1.SecretTypeOpaque
	}
	secret.Data = data
	return secret, controllerutil.SetControllerReference(obj, secret, r.Scheme())
}

// getLiveSecret reads the Secret from the API server, past the cache, in digest form.
func (r *CredentialReconciler[T]) getLiveSecret(ctx context.Context, obj T) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: obj.SecretName()}, secret)
	if client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", obj.SecretName(), err)
	}
	if err != nil || !metav1.IsControlledBy(secret, obj) {
		return nil, nil // gone, or replaced by someone else's: the next reconcile reports the conflict
	}
	return digestSecret(secret), nil
}
