// Package controllers holds the reconcilers of the manager.
//
// APIKey and OAuthClient share one credential lifecycle (issue, adopt, rotate with a
// grace period, expire, revoke, reissue, conflict) implemented once here by
// CredentialReconciler; each kind plugs in its formats through a CredentialKind.
// What the lifecycle writes into the Secret is in issue.go, when it rotates in
// rotation.go (one chain of triggers).
//
// Every reconciler writes its status in one place, statusWriter.finalize
// (statuswriter.go), at the end of the reconcile, with the kstatus conditions of
// progress.go.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// ManagedByLabel marks the Secrets the operator writes. The manager caches only
// Secrets with this label (as records: secretcache.go), so its memory does not
// grow with the cluster's Secrets.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "latchkey"
)

// conflictRecheck is how often a SecretConflict is re-examined: the conflicting
// Secret is not ours, so no watch tells us when it goes away.
const conflictRecheck = 30 * time.Second

// CredentialObject is what the lifecycle needs from a credential kind's object.
type CredentialObject interface {
	client.Object
	Lifecycle() *latchkeyv1.CredentialSpec
	CredentialStatus() *latchkeyv1.CredentialStatus
	SecretName() string
}

// CredentialKind plugs one kind's credential format into the shared lifecycle.
// Implementations never log or return the plaintext.
type CredentialKind[T CredentialObject] interface {
	// Name is the kind's name in Events and log lines ("API key"); it is also bound
	// into the issuance proof, so that a proof for one kind is never valid for another.
	Name() string
	NewObject() T
	// NewList returns an empty list of the kind, for the lookups an API event makes.
	NewList() client.ObjectList
	// Scopes are the scopes obj grants (spec.scopes), checked against the APIs'
	// catalogues for the ScopesKnown condition.
	Scopes(obj T) []string
	// Prepare runs before anything else, to settle kind-specific identity (an
	// OAuthClient's client_id). A *Refusal stops the lifecycle with Ready=False.
	Prepare(ctx context.Context, obj T) error
	// Generate returns a fresh plaintext credential for obj.
	Generate(obj T) (string, error)
	// SecretKey is the data key of the Secret that holds the plaintext credential.
	SecretKey() string
	// Status is obj's whole status, its own fields (keyID, clientID) with the shared
	// ones: what a reconcile compares with the object as read before it writes.
	Status(obj T) any
	// PublicData is the rest of the Secret's data, a new map each call: what a
	// workload needs beside the credential (client_id, token_url). Nothing secret.
	PublicData(obj T) map[string][]byte
	// Issued records kind-specific status for the current credential's hash.
	Issued(obj T, hash string)
	// Secretless reports that obj is issued no plaintext at all (a public OAuth
	// client): once Prepare has settled its identity it is Ready, reason Registered.
	Secretless(obj T) bool
}

// Refusal is a state of the object that retrying cannot fix, reported as
// Ready=False with Reason and a Warning Event; the object holds no credential
// until it is resolved.
type Refusal struct {
	Reason, Message string
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Message }

// CredentialReconciler runs the credential lifecycle for one kind.
type CredentialReconciler[T CredentialObject] struct {
	client.Client
	// APIReader reads past the cache, to confirm what the cache cannot know yet
	// (a Secret we just wrote, or one that is not ours and so not cached).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Kind      CredentialKind[T]
	// Keys is the issuance key: it proves that a credential in a Secret is one this
	// manager wrote for that object (see internal/issuanceproof).
	Keys *IssuanceKeySource
	// Catalogue holds the APIs' scope catalogues, for the ScopesKnown condition;
	// nil leaves the condition out.
	Catalogue *ScopeCatalogue

	// secrets looks up the cache's records of the Secrets we labelled (SetupWithManager).
	secrets *secretRecords
}

// observed is the state of the world one reconcile acts on.
type observed struct {
	now    time.Time
	secret *corev1.Secret // nil when there is none
}

// Reconcile snapshots the object, runs the lifecycle and writes the status once.
func (r *CredentialReconciler[T]) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := r.Kind.NewObject()
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil // the Secret goes with it, through its owner reference
	}
	before := obj.DeepCopyObject().(T)

	result, err := r.reconcile(ctx, obj, false)
	if errors.Is(err, errSecretAppeared) {
		// The cache missed a Secret that exists: decide again, on the live one.
		obj = before.DeepCopyObject().(T)
		result, err = r.reconcile(ctx, obj, true)
	}
	// On every path, revoked, expired and refused objects included: a typo in a
	// scope is worth knowing before the credential is issued again.
	r.setScopesKnown(obj)
	// Reports of credentials withdrawn or pruned by this reconcile are settled.
	r.handleLeaks(obj, r.Clock.Now())
	var work pending
	if rotation := rotationTriggers.evaluate(obj, r.Clock.Now()); rotation.due && err == nil {
		work = pending{latchkeyv1.ReasonRotationPending, "rotation " + rotation.why + " is done on the next reconcile"}
	}
	status := statusWriter[T]{client: r.Client, fields: r.statusFields, apiReader: r.APIReader, newObject: r.Kind.NewObject}
	if err = status.finalize(ctx, before, obj, work, err); err != nil {
		return ctrl.Result{}, err // retried with backoff; a RequeueAfter beside an error is ignored (and logged)
	}
	r.leakEvents(before, obj)
	return result, nil
}

// statusFields is the status a credential's reconcile writes: all of it, so that a
// kind's own field (an OAuthClient's clientID, which the client_id index reads)
// is written back even when nothing else changed.
func (r *CredentialReconciler[T]) statusFields(obj T) statusFields {
	status := obj.CredentialStatus()
	return statusFields{conditions: &status.Conditions, observedGeneration: &status.ObservedGeneration, compared: r.Kind.Status(obj)}
}

func (r *CredentialReconciler[T]) reconcile(ctx context.Context, obj T, confirmMiss bool) (ctrl.Result, error) {
	status := obj.CredentialStatus()
	status.SecretRef = &latchkeyv1.SecretReference{Name: obj.SecretName()}
	status.ExpiresAt = obj.Lifecycle().ExpiresAt
	r.handleLeaks(obj, r.Clock.Now()) // before anything that can fail: a revocation waits for nothing

	secret, err := r.getSecret(ctx, obj, confirmMiss || status.Serial > 0)
	if err != nil {
		return ctrl.Result{}, err
	}
	state := observed{now: r.Clock.Now(), secret: secret}
	var refusal *Refusal
	if err := r.Kind.Prepare(ctx, obj); errors.As(err, &refusal) {
		// Re-examined on a timer: what resolves it (the other holder going away) is
		// an event on another object.
		if err := r.withdraw(ctx, obj, state, metav1.ConditionFalse, corev1.EventTypeWarning, refusal.Reason, refusal.Message); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{RequeueAfter: conflictRecheck}, nil
	} else if err != nil {
		return ctrl.Result{}, err
	}

	spec := obj.Lifecycle()
	switch {
	// Revoked and expired are states the spec declares, so they are Ready=True: a
	// revocation synced from Git is done, not pending (ConditionReady).
	case spec.Revoked:
		return ctrl.Result{}, r.withdraw(ctx, obj, state, metav1.ConditionTrue, corev1.EventTypeNormal, latchkeyv1.ReasonRevoked,
			fmt.Sprintf("The %s was revoked: every hash removed and the Secret deleted", r.Kind.Name()))
	case spec.ExpiresAt != nil && !state.now.Before(spec.ExpiresAt.Time):
		return ctrl.Result{}, r.withdraw(ctx, obj, state, metav1.ConditionTrue, corev1.EventTypeNormal, latchkeyv1.ReasonExpired,
			fmt.Sprintf("The %s expired at %s", r.Kind.Name(), spec.ExpiresAt.UTC().Format(time.RFC3339)))
	case r.Kind.Secretless(obj):
		return ctrl.Result{}, r.register(ctx, obj, state)
	case secret != nil && !metav1.IsControlledBy(secret, obj):
		note := fmt.Sprintf("Secret %s exists and is not controlled by this %s; it is left untouched", secret.Name, r.Kind.Name())
		if r.setReady(obj, metav1.ConditionFalse, latchkeyv1.ReasonSecretConflict, note) {
			r.event(obj, corev1.EventTypeWarning, latchkeyv1.ReasonSecretConflict, "%s", note)
		}
		return ctrl.Result{RequeueAfter: conflictRecheck}, nil
	}
	if err := r.ensureCredential(ctx, obj, state); err != nil {
		if errors.Is(err, errSecretAppeared) || errors.Is(err, errSecretChanged) {
			return ctrl.Result{}, err
		}
		note := "could not write the Secret: " + apiReason(err)
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			// The Secret as the spec shapes it (spec.secretTemplate) is refused:
			// retrying the same write cannot help, a change to the spec can.
			if r.setReady(obj, metav1.ConditionFalse, latchkeyv1.ReasonSecretRejected, note) {
				r.event(obj, corev1.EventTypeWarning, latchkeyv1.ReasonSecretRejected, "%s", note)
			}
			return ctrl.Result{RequeueAfter: conflictRecheck}, nil
		}
		if r.setReady(obj, metav1.ConditionFalse, latchkeyv1.ReasonIssueFailed, note) {
			r.event(obj, corev1.EventTypeWarning, latchkeyv1.ReasonIssueFailed, "%s", note)
		}
		return ctrl.Result{}, retriedFailure{err}
	}
	pruneGraceEnded(status, state.now)
	r.setReadyIssued(obj)
	return requeueAt(nextEvent(obj, state.now), state.now), nil
}

// getSecret returns the Secret by name, in digest form. The cache holds a record of
// each Secret we labelled (secretRecord). When it says the Secret is exactly as the
// lifecycle would write it now, that is the Secret (secretAsWritten) and nothing is
// read; when it says obj does not control it, its stub says so. Otherwise the
// Secret is read live: one changed by someone, or one that also carries labels or
// annotations someone else added, which the lifecycle keeps. A miss in the
// cache may be someone else's Secret, or one we created a moment ago that the
// cache has not seen yet; with confirmMiss it is confirmed against the API server.
//
// Without it (an object that has never been issued a credential) the miss is
// taken at its word: creating the Secret then either works or fails with
// AlreadyExists (errSecretAppeared), and Reconcile decides again on the live
// Secret. That saves one GET per new object, a fifth of the API requests of
// issuing 10,000 APIKeys at once (make bench).
func (r *CredentialReconciler[T]) getSecret(ctx context.Context, obj T, confirmMiss bool) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.SecretName()}
	record := r.secrets.get(key)
	if record == nil && !confirmMiss {
		return nil, nil
	}
	if record != nil && !record.opaque {
		if !record.controlledBy(obj) {
			return record.stub(), nil // someone else's: all that matters is that (SecretConflict)
		}
		// A record that cannot be checked (the issuance key unreadable) vouches for
		// nothing: a revocation or an expiry waits for no key.
		if secret, err := r.secretAsWritten(ctx, obj, record); secret != nil && err == nil {
			return secret, nil
		}
	}
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", key.Name, err)
	}
	return digestSecret(secret), nil
}

// secretAsWritten returns, in digest form, the Secret the lifecycle would write for
// obj's current credential, if record (of a Secret obj controls) says that is the
// Secret as it is: same shape, and not being deleted. Otherwise nil.
func (r *CredentialReconciler[T]) secretAsWritten(ctx context.Context, obj T, record *secretRecord) (*corev1.Secret, error) {
	credentials := obj.CredentialStatus().Credentials
	if record.deleting || len(credentials) == 0 {
		return nil, nil
	}
	current := credentials[0]
	digest, ok := credential.DigestOfHash(current.Hash)
	if !ok {
		return nil, nil
	}
	shell := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: record.namespace, Name: record.name,
		UID: types.UID(record.uid.String()), ResourceVersion: record.resourceVersion}}
	secret, err := r.desiredSecret(ctx, obj, shell, r.digestData(obj, digest[:]), current.Serial, current.Hash)
	if err != nil || secretShape(secret) != record.shape {
		return nil, err
	}
	return secret, nil
}

// owned returns the Secret if obj controls it.
func (s observed) owned(obj client.Object) *corev1.Secret {
	if s.secret != nil && metav1.IsControlledBy(s.secret, obj) {
		return s.secret
	}
	return nil
}

// withdraw removes every hash and deletes the Secret we own (never another's), and
// reports Ready as ready (True for a withdrawal the spec declares, False for a
// refusal) with reason and message.
func (r *CredentialReconciler[T]) withdraw(ctx context.Context, obj T, state observed, ready metav1.ConditionStatus, eventType, reason, message string) error {
	status := obj.CredentialStatus()
	if owned := state.owned(obj); owned != nil {
		err := r.Delete(ctx, owned, client.Preconditions{UID: &owned.UID})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Secret %s: %w", owned.Name, err)
		}
	}
	status.Credentials = nil
	if r.setReady(obj, ready, reason, message) {
		// Retire the serial: a credential written for it but never recorded (a
		// withdrawal that raced an issuance) can then never be adopted afterwards.
		status.Serial++
		r.event(obj, eventType, reason, "%s", message)
	}
	return nil
}

// register is the healthy state of an object issued no plaintext: nothing of ours
// may be left (clientType is immutable, so only a leftover could be), another's
// Secret is left alone.
func (r *CredentialReconciler[T]) register(ctx context.Context, obj T, state observed) error {
	if owned := state.owned(obj); owned != nil {
		err := r.Delete(ctx, owned, client.Preconditions{UID: &owned.UID})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Secret %s: %w", owned.Name, err)
		}
	}
	obj.CredentialStatus().Credentials = nil
	obj.CredentialStatus().SecretRef = nil
	message := "no secret is issued to a public client: it proves itself with PKCE"
	if r.setReady(obj, metav1.ConditionTrue, latchkeyv1.ReasonRegistered, message) {
		r.event(obj, corev1.EventTypeNormal, latchkeyv1.ReasonRegistered, "%s", message)
	}
	return nil
}

// setReadyIssued reports the healthy state: Issued, or Rotating while a previous
// credential is still in its grace period.
func (r *CredentialReconciler[T]) setReadyIssued(obj T) {
	status := obj.CredentialStatus()
	current := status.Credentials[0]
	message := issuedMessage(r.Kind.Name(), credential.KeyID(current.Hash), obj.SecretName())
	if len(status.Credentials) > 1 {
		previous := status.Credentials[len(status.Credentials)-1]
		r.setReady(obj, metav1.ConditionTrue, latchkeyv1.ReasonRotating,
			fmt.Sprintf("%s; the previous one is accepted until %s", message, previous.NotAfter.UTC().Format(time.RFC3339)))
		return
	}
	r.setReady(obj, metav1.ConditionTrue, latchkeyv1.ReasonIssued, message)
}

// issuedMessage is the Ready message of an issued credential: which one, in which Secret.
func issuedMessage(kindName, keyID, secretName string) string {
	return fmt.Sprintf("%s %s is in Secret %s", kindName, keyID, secretName)
}

// setReady sets obj's Ready condition and reports whether its reason changed.
func (r *CredentialReconciler[T]) setReady(obj T, status metav1.ConditionStatus, reason, message string) bool {
	return setReadyCondition(&obj.CredentialStatus().Conditions, obj.GetGeneration(), status, reason, message)
}

func (r *CredentialReconciler[T]) event(obj T, eventType, reason, note string, args ...any) {
	r.Recorder.Eventf(obj, nil, eventType, reason, "Reconcile", note, args...)
}

// pruneGraceEnded drops credentials whose grace period is over.
func pruneGraceEnded(status *latchkeyv1.CredentialStatus, now time.Time) {
	kept := status.Credentials[:0]
	for _, c := range status.Credentials {
		if c.NotAfter == nil || now.Before(c.NotAfter.Time) {
			kept = append(kept, c)
		}
	}
	status.Credentials = kept
}

// nextEvent is the next moment the lifecycle must act by itself: a grace period
// ending, a rotation trigger (rotationTriggers) coming due or still due, a leak
// report to drop, or expiry. Zero when there is none.
func nextEvent(obj CredentialObject, now time.Time) time.Time {
	next := earliest(rotationTriggers.evaluate(obj, now).next, leakRecordExpiry(obj))
	for _, c := range obj.CredentialStatus().Credentials {
		if c.NotAfter != nil {
			next = earliest(next, c.NotAfter.Time)
		}
	}
	if expiresAt := obj.Lifecycle().ExpiresAt; expiresAt != nil {
		next = earliest(next, expiresAt.Time)
	}
	return next
}

func requeueAt(at, now time.Time) ctrl.Result {
	if at.IsZero() {
		return ctrl.Result{}
	}
	// Status times have one-second precision; wake just after the moment, not before it.
	return ctrl.Result{RequeueAfter: max(at.Sub(now), 0) + 100*time.Millisecond}
}

// apiReason shortens an API error for a condition message.
func apiReason(err error) string {
	if status, ok := err.(apierrors.APIStatus); ok {
		return string(status.Status().Reason) + ": " + status.Status().Message
	}
	return err.Error()
}

// secretSerial reads the serial annotation; 0 when missing or malformed.
func secretSerial(secret *corev1.Secret) int64 {
	n, err := strconv.ParseInt(secret.Annotations[latchkeyv1.SerialAnnotation], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
