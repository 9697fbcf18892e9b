package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
)

// errSecretAppeared: the Secret was created while the cache said there was none.
var errSecretAppeared = errors.New("the Secret exists although the cache has none")

// secretState is how the Secret's content relates to what status accepts.
type secretState int

const (
	secretMissing  secretState = iota
	secretCurrent              // holds the credential status accepts as current
	secretNewer                // holds a well-formed credential issued after status was last written: adopt it
	secretModified             // holds something else: changed by someone, or stale in our cache
)

func (r *CredentialReconciler[T]) classify(obj T, secret *corev1.Secret) (secretState, string) {
	if secret == nil {
		return secretMissing, ""
	}
	status := obj.CredentialStatus()
	plaintext, wellFormed := r.Kind.Plaintext(obj, secret.Data)
	serial := secretSerial(secret)
	switch {
	case !wellFormed:
		return secretModified, ""
	case serial > status.Serial:
		return secretNewer, plaintext
	case serial == status.Serial && len(status.Credentials) > 0 && status.Credentials[0].Hash == credential.Hash(plaintext):
		return secretCurrent, plaintext
	}
	return secretModified, ""
}

// ensureCredential makes the owned Secret hold a credential whose hash status
// accepts: it issues, adopts, rotates or reissues as the observed state requires.
// On return without error, status.Credentials[0] is the credential in the Secret.
func (r *CredentialReconciler[T]) ensureCredential(ctx context.Context, obj T, state observed) error {
	secret := state.secret
	kind, plaintext := r.classify(obj, secret)
	if kind == secretModified {
		// The cache may lag behind our own last write; decide on the live object.
		live, err := r.getLiveSecret(ctx, obj)
		if err != nil {
			return err
		}
		secret = live
		kind, plaintext = r.classify(obj, secret)
	}
	status := obj.CredentialStatus()
	rotate, why := rotationDue(obj, state.now)

	switch kind {
	case secretNewer:
		r.accept(obj, credential.Hash(plaintext), secretSerial(secret), state.now, rotate)
		return r.ensureSecretShape(ctx, obj, secret, plaintext)
	case secretCurrent:
		if !rotate {
			return r.ensureSecretShape(ctx, obj, secret, plaintext)
		}
		if err := r.issue(ctx, obj, secret, state.now, true); err != nil {
			return err
		}
		r.event(obj, corev1.EventTypeNormal, "Rotated", "Rotated %s: %s is current; the previous one is accepted for %s",
			why, credential.KeyID(status.Credentials[0].Hash), gracePeriod(obj))
		return nil
	case secretModified:
		r.event(obj, corev1.EventTypeWarning, "SecretModified",
			"Secret %s no longer holds the issued %s; issuing a new one", secret.Name, r.Kind.Name())
	case secretMissing:
		if len(status.Credentials) > 0 {
			r.event(obj, corev1.EventTypeWarning, "SecretDeleted",
				"Secret %s was deleted; issuing a new %s and dropping the old one", obj.SecretName(), r.Kind.Name())
		}
	}
	status.Credentials = nil // whatever the Secret held before is gone: never accept it again
	if err := r.issue(ctx, obj, secret, state.now, false); err != nil {
		return err
	}
	r.event(obj, corev1.EventTypeNormal, latchkeyv1.ReasonIssued, "Issued %s %s into Secret %s",
		r.Kind.Name(), credential.KeyID(status.Credentials[0].Hash), obj.SecretName())
	return nil
}

// issue generates a credential, writes it to the Secret first and records its hash
// second: if the process dies in between, the next reconcile adopts it (secretNewer).
func (r *CredentialReconciler[T]) issue(ctx context.Context, obj T, existing *corev1.Secret, now time.Time, rotation bool) error {
	plaintext, err := r.Kind.Generate(obj)
	if err != nil {
		return fmt.Errorf("generating %s: %w", r.Kind.Name(), err)
	}
	serial := obj.CredentialStatus().Serial + 1
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: obj.GetNamespace(), Name: obj.SecretName()}}
	if existing != nil {
		secret = existing.DeepCopy()
	}
	if err := r.shapeSecret(obj, secret, plaintext, serial); err != nil {
		return err
	}
	if existing == nil {
		err = r.Create(ctx, secret)
		if apierrors.IsAlreadyExists(err) {
			return errSecretAppeared
		}
	} else {
		err = r.Update(ctx, secret)
	}
	if err != nil {
		return fmt.Errorf("writing Secret %s: %w", secret.Name, err)
	}
	r.accept(obj, credential.Hash(plaintext), serial, now, rotation)
	return nil
}

// accept makes hash the current credential. On a rotation the previous current one
// stays accepted for the grace period; otherwise nothing else is kept.
func (r *CredentialReconciler[T]) accept(obj T, hash string, serial int64, now time.Time, rotation bool) {
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
	status.LastRotateRequest = obj.GetAnnotations()[latchkeyv1.RotateAnnotation]
	r.Kind.Issued(obj, hash)
}

// ensureSecretShape keeps labels, annotations, owner and data (other than the
// credential itself) as desired, without touching the credential.
func (r *CredentialReconciler[T]) ensureSecretShape(ctx context.Context, obj T, secret *corev1.Secret, plaintext string) error {
	desired := secret.DeepCopy()
	if err := r.shapeSecret(obj, desired, plaintext, secretSerial(secret)); err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(desired, secret) {
		return nil
	}
	if err := r.Update(ctx, desired); err != nil {
		return fmt.Errorf("updating Secret %s: %w", secret.Name, err)
	}
	return nil
}

// shapeSecret writes the desired content into secret. Labels and annotations from
// spec.secretTemplate are merged over whatever else is there; ours come last.
func (r *CredentialReconciler[T]) shapeSecret(obj T, secret *corev1.Secret, plaintext string, serial int64) error {
	labels, annotations := map[string]string{}, map[string]string{}
	if t := obj.Lifecycle().SecretTemplate; t != nil {
		maps.Copy(labels, t.Labels)
		maps.Copy(annotations, t.Annotations)
	}
	if secret.Labels == nil {
		secret.Labels = map[string]string{}
	}
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	maps.Copy(secret.Labels, labels)
	maps.Copy(secret.Annotations, annotations)
	secret.Labels[ManagedByLabel] = ManagedByValue
	secret.Annotations[latchkeyv1.SerialAnnotation] = strconv.FormatInt(serial, 10)
	if secret.Type == "" {
		secret.Type = corev1.SecretTypeOpaque
	}
	secret.Data = r.Kind.SecretData(obj, plaintext)
	return controllerutil.SetControllerReference(obj, secret, r.Scheme())
}

// getLiveSecret reads the Secret from the API server, past the cache.
func (r *CredentialReconciler[T]) getLiveSecret(ctx context.Context, obj T) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: obj.SecretName()}, secret)
	if client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", obj.SecretName(), err)
	}
	if err != nil || !metav1.IsControlledBy(secret, obj) {
		return nil, nil // gone, or replaced by someone else's: the next reconcile reports the conflict
	}
	return secret, nil
}

// rotationDue reports whether the current credential must be replaced now, and why.
func rotationDue(obj CredentialObject, now time.Time) (bool, string) {
	status, spec := obj.CredentialStatus(), obj.Lifecycle()
	if len(status.Credentials) == 0 {
		return false, ""
	}
	if request := obj.GetAnnotations()[latchkeyv1.RotateAnnotation]; request != "" && request != status.LastRotateRequest {
		return true, "on request (" + latchkeyv1.RotateAnnotation + ")"
	}
	if spec.Rotation != nil && spec.Rotation.Interval != nil &&
		!now.Before(status.Credentials[0].IssuedAt.Add(spec.Rotation.Interval.Duration)) {
		return true, "on schedule (every " + spec.Rotation.Interval.Duration.String() + ")"
	}
	return false, ""
}

func gracePeriod(obj CredentialObject) time.Duration {
	if r := obj.Lifecycle().Rotation; r != nil && r.GracePeriod != nil {
		return r.GracePeriod.Duration
	}
	d, _ := time.ParseDuration(latchkeyv1.DefaultGracePeriod)
	return d
}
