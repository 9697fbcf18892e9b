package controllers

import (
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// The manager holds every APIKey, OAuthClient and Secret of the cluster in its
// cache, so what one cached object costs, times the number of credentials, is
// most of its memory. The cache keeps each object in a smaller form than the API
// server sends (make bench, "Memory and the scale envelope"):
//
//   - no managedFields and no kubectl last-applied annotation, on every object:
//     the manager reads neither;
//   - of an APIKey or OAuthClient, no labels, finalizers or owner references and
//     no annotation but latchkeyv1.RotateAnnotation and ReconcileAnnotation:
//     nothing else of their metadata is read, and so what a tenant puts there
//     costs the manager nothing;
//   - strings that repeat across objects (namespaces, scopes, condition types and
//     reasons, owner kinds) share one copy (interned).
//
// Secrets are cached as records, not objects (secretcache.go), and APIKeys, the
// credentials there are most of, as records that give the object in this form
// exactly (apikeyrecord.go).
//
// Cached objects are shared, read-only: a Get or List deep-copies them (a List
// of APIs with UnsafeDisableDeepCopy only reads; one of APIKeys cannot, as their
// entries are records), and a cached copy is never written back as it is:
// writes are merge patches against it (a field absent on both sides is not in
// the patch) or updates of a live read.

// CacheOptions are the manager's cache options: CacheByObject, and every other
// cached object in the form above (cacheTransform).
func CacheOptions(jwksConfigMap ...client.ObjectKey) cache.Options {
	return cache.Options{ByObject: CacheByObject(jwksConfigMap...), DefaultTransform: cacheTransform}
}

// cacheTransform puts an object other than a Secret (secretRecordTransform does
// those) in the cache's form, sharing its repeated strings.
func cacheTransform(obj any) (any, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return obj, nil // a tombstone as it is
	}
	cacheForm(o)
	internMeta(o)
	if c, ok := obj.(CredentialObject); ok {
		internCredential(c)
	}
	return obj, nil
}

// cacheForm drops from o what the cache leaves out. The status writer puts a
// live read in the same form before comparing it with a cached one.
func cacheForm(o metav1.Object) {
	o.SetManagedFields(nil)
	if _, isCredential := o.(CredentialObject); isCredential {
		o.SetLabels(nil)
		o.SetFinalizers(nil)
		o.SetOwnerReferences(nil)
		o.SetAnnotations(credentialAnnotations(o.GetAnnotations()))
	} else if annotations := o.GetAnnotations(); annotations != nil {
		if _, ok := annotations[corev1.LastAppliedConfigAnnotation]; ok {
			delete(annotations, corev1.LastAppliedConfigAnnotation)
			if len(annotations) == 0 {
				o.SetAnnotations(nil)
			}
		}
	}
}

// credentialAnnotations is what the cache keeps of a credential's annotations:
// the rotate request, which the lifecycle reads, and the reconcile request, whose
// change triggers a reconcile (SetupWithManager). A value longer than
// maxRequestLen is kept as its digest ("sha256:<hex>"), which changes when it
// does: the lifecycle acts on it and status.lastRotateRequest records it, so
// that neither the cache nor the status holds what a tenant can make as long as
// an annotation can be.
func credentialAnnotations(annotations map[string]string) map[string]string {
	var kept map[string]string
	for _, name := range []string{latchkeyv1.RotateAnnotation, latchkeyv1.ReconcileAnnotation} {
		value, ok := annotations[name]
		if !ok {
			continue
		}
		if len(value) > maxRequestLen {
			value = credential.Hash(value)
		}
		if kept == nil {
			kept = make(map[string]string, 2)
		}
		kept[name] = value
	}
	return kept
}

// maxRequestLen is the longest rotate or reconcile request the cache keeps as
// it is: a timestamp, a commit hash or a short note fits.
const maxRequestLen = 256

// internMeta shares the metadata strings that repeat across objects.
func internMeta(o metav1.Object) {
	o.SetNamespace(interned.of(o.GetNamespace()))
	finalizers := o.GetFinalizers()
	for i := range finalizers {
		finalizers[i] = interned.of(finalizers[i])
	}
	owners := o.GetOwnerReferences()
	for i := range owners {
		owners[i].APIVersion = interned.of(owners[i].APIVersion)
		owners[i].Kind = interned.of(owners[i].Kind)
		owners[i].Controller = sharedBool(owners[i].Controller)
		owners[i].BlockOwnerDeletion = sharedBool(owners[i].BlockOwnerDeletion)
	}
}

// internCredential shares the strings of a credential's spec and status that
// repeat across credentials. Of the condition messages, only ScopesKnown's are
// shared: the others name the credential (its key ID, its Secret, a report).
func internCredential(c CredentialObject) {
	switch obj := c.(type) {
	case *latchkeyv1.APIKey:
		internAll(obj.Spec.Scopes)
		obj.Spec.Environment = latchkeyv1.Environment(interned.of(string(obj.Spec.Environment)))
		obj.Spec.Prefix = interned.of(obj.Spec.Prefix)
		obj.Status.Prefix = interned.of(obj.Status.Prefix)
	case *latchkeyv1.OAuthClient:
		internAll(obj.Spec.Scopes)
	}
	conditions := c.CredentialStatus().Conditions
	for i := range conditions {
		conditions[i].Type = interned.of(conditions[i].Type)
		conditions[i].Status = metav1.ConditionStatus(interned.of(string(conditions[i].Status)))
		conditions[i].Reason = interned.of(conditions[i].Reason)
		if conditions[i].Type == latchkeyv1.ConditionScopesKnown {
			conditions[i].Message = interned.of(conditions[i].Message)
		}
	}
}

var sharedTrue, sharedFalse = new(bool(true)), new(bool(false))

func sharedBool(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return sharedTrue
	default:
		return sharedFalse
	}
}

func internAll(values []string) {
	for i := range values {
		values[i] = interned.of(values[i])
	}
}

// interned is the manager's table of shared strings, seeded with the words the
// manager itself writes. It is bounded: past maxInterned strings (or for one
// longer than maxInternedLen) a string is kept as it is, so that what tenants
// name (namespaces, scopes) can fill the table but not grow it.
var interned = newInternTable(
	ManagedByLabel, ManagedByValue, latchkeyv1.SerialAnnotation, latchkeyv1.IssuanceProofAnnotation,
	latchkeyv1.RotateAnnotation, latchkeyv1.ReconcileAnnotation, string(corev1.SecretTypeOpaque), latchkeyv1.GroupVersion.String(),
	string(metav1.ConditionTrue), string(metav1.ConditionFalse), string(metav1.ConditionUnknown),
	latchkeyv1.ConditionReady, latchkeyv1.ConditionReconciling, latchkeyv1.ConditionStalled,
	latchkeyv1.ConditionScopesKnown, latchkeyv1.ConditionLeaked,
)

const (
	maxInterned    = 8192
	maxInternedLen = 256
)

type internTable struct {
	mu      sync.Mutex
	strings map[string]string
}

func newInternTable(seed ...string) *internTable {
	t := &internTable{strings: make(map[string]string, len(seed))}
	for _, s := range slices.Compact(slices.Sorted(slices.Values(seed))) {
		t.strings[s] = s
	}
	return t
}

// of returns the table's copy of s, adding s if there is room.
func (t *internTable) of(s string) string {
	if s == "" || len(s) > maxInternedLen {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if shared, ok := t.strings[s]; ok {
		return shared
	}
	if len(t.strings) < maxInterned {
		s = strings.Clone(s) // not a slice of a larger decoded buffer
		t.strings[s] = s
	}
	return s
}
