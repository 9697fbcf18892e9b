package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// The manager watches the Secrets labelled managed-by=latchkey, and any tenant can
// put that label on any Secret of theirs. Its cache keeps, of each, a bounded
// secretRecord rather than the Secret: what a reconcile needs to tell that the
// Secret is exactly as the lifecycle would write it now (its shape: a SHA-256 of
// its type, labels, annotations, owner references and the SHA-256 of each data
// value), whom it belongs to, and the resourceVersion a write locks on. A
// reconcile that finds its Secret so takes the Secret as it would write it
// (secretAsWritten) and reads nothing, as does one whose record names another
// controller (stub); any other reads the Secret live, in digest form. The manager
// thus holds no plaintext credential beyond the moment it generates one, and no
// more per Secret than its names, whatever a tenant puts in it (make bench,
// "Memory and the scale envelope": a typed Secret in digest form cost ~1 KB more
// per credential).
//
// The digest form of a Secret read live (digestSecret) bounds what one reconcile
// holds: every data value is replaced by its SHA-256, and with more than
// maxDigestDataKeys values, or labels, annotations, finalizers and owner
// references over maxDigestMetadataBytes, the Secret is not ours in any useful
// shape: its data and foreign metadata (all but our label and annotations and the
// controller reference) are dropped and trimmedAnnotation marks the copy as
// partial, so that a write to it starts from a full live read (updateLiveSecret).
const (
	maxDigestDataKeys      = 8
	maxDigestMetadataBytes = 16 << 10
	// trimmedAnnotation marks a digest-form copy that lacks data or metadata. It
	// exists only in the manager's memory, never in the API server.
	trimmedAnnotation = "latchkey.dev/cache-trimmed"
)

// CacheByObject restricts the Secret cache to the Secrets the operator labelled,
// as secretRecords, and caches APIKeys as apiKeyRecords. Given the JWKS
// ConfigMap (optional: SigningKeyOptions.JWKSConfigMap in the signing keys'
// namespace), it restricts the ConfigMap cache to that one, so that the manager
// neither holds nor needs the right to list the cluster's ConfigMaps.
func CacheByObject(jwksConfigMap ...client.ObjectKey) map[client.Object]cache.ByObject {
	byObject := map[client.Object]cache.ByObject{
		&corev1.Secret{}: {
			Label:     labels.SelectorFromSet(labels.Set{ManagedByLabel: ManagedByValue}),
			Transform: secretRecordTransform,
		},
		&latchkeyv1.APIKey{}: {Transform: apiKeyRecordTransform},
	}
	if len(jwksConfigMap) > 0 && jwksConfigMap[0].Name != "" {
		byObject[&corev1.ConfigMap{}] = jwksCacheByObject(jwksConfigMap[0])
	}
	return byObject
}

// secretRecord is what the manager's cache keeps of a Secret it labelled. Only
// the informer's store and secretRecords hold it: a cached client's Get of a
// Secret fails (the cache holds another type), so that nothing reads a Secret as
// if the cache had it; a cached List with a label selector finds none (a record
// shows no labels), so nothing may list Secrets through the cache either.
type secretRecord struct {
	namespace, name, resourceVersion string
	uid                              uuid.UUID
	deleting                         bool // it has a deletionTimestamp
	// opaque: a UID of the Secret or its controller is not a UUID as the API
	// server spells one; such a record vouches for nothing (getSecret reads live).
	opaque bool
	// controller is the Secret's controller reference if it names an APIKey or
	// an OAuthClient; its kind is "" otherwise.
	controller secretController
	// shape is secretShape of the Secret in digest form.
	shape [sha256.Size]byte
}

// secretController is a Secret's controller reference, as a secretRecord keeps it.
type secretController struct {
	kind, name string
	uid        uuid.UUID
}

// GetObjectMeta names the record for the informer's store and its namespace index.
func (r *secretRecord) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: r.namespace, Name: r.name, ResourceVersion: r.resourceVersion}
}

// GetObjectKind and DeepCopyObject make a record a runtime.Object, as the
// informer's store wants; a record is never changed once made.
func (r *secretRecord) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (r *secretRecord) DeepCopyObject() runtime.Object {
	c := *r
	return &c
}

// secretRecordTransform makes the cache's record of a Secret. UIDs are kept as
// the 16 bytes they spell rather than as 36 characters.
func secretRecordTransform(obj any) (any, error) {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil // a record already, or a tombstone
	}
	digestSecret(secret)
	uid, ok := parseUID(secret.UID)
	record := &secretRecord{
		namespace:       interned.of(secret.Namespace),
		name:            secret.Name,
		resourceVersion: secret.ResourceVersion,
		uid:             uid,
		deleting:        secret.DeletionTimestamp != nil,
		opaque:          !ok,
		shape:           secretShape(secret),
	}
	if owner := metav1.GetControllerOfNoCopy(secret); owner != nil {
		record.controller, ok = controllerOf(owner)
		record.opaque = record.opaque || !ok
	}
	return record, nil
}

// controllerOf is owner as a record keeps it: only an APIKey or an OAuthClient
// (any other controller is none of the manager's business), by its kind's own
// string and a name no longer than a valid one. A tenant can write any owner
// reference, of any length, on a Secret it labels.
func controllerOf(owner *metav1.OwnerReference) (secretController, bool) {
	gv, err := schema.ParseGroupVersion(owner.APIVersion)
	if err != nil || gv.Group != latchkeyv1.GroupVersion.Group || len(owner.Name) > validation.DNS1123SubdomainMaxLength {
		return secretController{}, true
	}
	var kind string
	switch owner.Kind {
	case "APIKey":
		kind = "APIKey"
	case "OAuthClient":
		kind = "OAuthClient"
	default:
		return secretController{}, true
	}
	uid, ok := parseUID(owner.UID)
	return secretController{kind: kind, name: owner.Name, uid: uid}, ok
}

// parseUID reads a UID as the API server writes it (a UUID, lower case with
// hyphens), and only so: another spelling of the same bytes is another UID.
func parseUID(uid types.UID) (uuid.UUID, bool) {
	u, err := uuid.Parse(string(uid))
	return u, err == nil && u.String() == string(uid)
}

// controllerKind is the kind of the Secret's controller: "" for none, or a record of nothing.
func (r *secretRecord) controllerKind() string {
	if r == nil {
		return ""
	}
	return r.controller.kind
}

// controlledBy reports whether obj is the Secret's controller, by UID.
func (r *secretRecord) controlledBy(obj metav1.Object) bool {
	uid, ok := parseUID(obj.GetUID())
	return r.controller.kind != "" && !r.opaque && ok && uid == r.controller.uid
}

// stub is the Secret as far as its record tells: its names and its controller
// reference, enough to tell that it is not obj's (SecretConflict) without reading it.
func (r *secretRecord) stub() *corev1.Secret {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.namespace, Name: r.name,
		UID: types.UID(r.uid.String()), ResourceVersion: r.resourceVersion}}
	if r.controller.kind != "" {
		secret.OwnerReferences = []metav1.OwnerReference{{APIVersion: latchkeyv1.GroupVersion.String(), Kind: r.controller.kind,
			Name: r.controller.name, UID: types.UID(r.controller.uid.String()), Controller: new(bool(true))}}
	}
	return secret
}

// secretShape is a SHA-256 of everything of a digest-form Secret the lifecycle
// writes or compares: its type, immutability, labels, annotations, owner
// references and data digests. Two Secrets with one shape differ at most in
// what the lifecycle leaves alone (finalizers, timestamps, managedFields).
func secretShape(secret *corev1.Secret) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	count := func(c int) {
		binary.BigEndian.PutUint64(n[:], uint64(c))
		h.Write(n[:])
	}
	flag := func(b *bool) string {
		switch {
		case b == nil:
			return ""
		case *b:
			return "true"
		default:
			return "false"
		}
	}
	field(string(secret.Type))
	field(flag(secret.Immutable))
	for _, m := range []map[string]string{secret.Labels, secret.Annotations} {
		count(len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			field(k)
			field(m[k])
		}
	}
	count(len(secret.OwnerReferences))
	for _, o := range secret.OwnerReferences {
		field(o.APIVersion)
		field(o.Kind)
		field(o.Name)
		field(string(o.UID))
		field(flag(o.Controller))
		field(flag(o.BlockOwnerDeletion))
	}
	if secret.Data == nil {
		count(-1) // nil and empty differ in a DeepEqual, and so here
	} else {
		count(len(secret.Data))
	}
	for _, k := range slices.Sorted(maps.Keys(secret.Data)) {
		field(k)
		field(string(secret.Data[k]))
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// secretRecords looks the manager's Secret records up by name, and hands their
// changes to the credential controllers. One event handler on the cache's Secret
// informer does both, in that order, so that a reconcile a change enqueues finds
// the change's record (with --namespaces that informer is one per namespace
// behind one interface, with no store to read). It shares the records and their
// names with the informer's store.
type secretRecords struct {
	// handler tells when the lookup holds every record of the informer's initial list.
	handler toolscache.ResourceEventHandlerRegistration
	mu      sync.RWMutex
	byName  map[types.NamespacedName]*secretRecord
	// queues are the started credential controllers' queues, by the kind they reconcile.
	queues map[string]workqueue.TypedRateLimitingInterface[reconcile.Request]
}

// secretRecordsOf is the lookup of the records of the manager's cache c
// (CacheByObject): one per cache, made on first use, so that both credential
// controllers (and the specs that check what the manager holds) share it.
func secretRecordsOf(ctx context.Context, c cache.Cache) (*secretRecords, error) {
	recordsMu.Lock()
	defer recordsMu.Unlock()
	if s, ok := recordsOf[c]; ok {
		return s, nil
	}
	informer, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return nil, err
	}
	s := &secretRecords{byName: map[types.NamespacedName]*secretRecord{},
		queues: map[string]workqueue.TypedRateLimitingInterface[reconcile.Request]{}}
	s.handler, err = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.update(nil, recordOf(obj)) },
		UpdateFunc: func(old, obj any) { s.update(recordOf(old), recordOf(obj)) },
		DeleteFunc: func(obj any) { s.update(recordOf(obj), nil) },
	})
	if err != nil {
		return nil, err
	}
	recordsOf[c] = s
	return s, nil
}

var (
	recordsMu sync.Mutex
	recordsOf = map[cache.Cache]*secretRecords{}
)

// update records a Secret's change from before to after (nil: created, or deleted),
// then enqueues the credentials that control it, before and after (the owner a
// changed controller reference leaves, too). Creations enqueue nothing: the manager
// is the one creating the Secrets it controls (one someone else creates under the
// same name is found when its owner is next reconciled, as its creation cannot be
// told apart from ours). A resync, which changes nothing, enqueues the owner below
// every change, as controller-runtime's Owns does: the periodic check that each
// credential's Secret is still as written.
func (s *secretRecords) update(before, after *secretRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case after != nil:
		s.byName[types.NamespacedName{Namespace: after.namespace, Name: after.name}] = after
	case before != nil:
		delete(s.byName, types.NamespacedName{Namespace: before.namespace, Name: before.name})
	}
	if before == nil {
		return
	}
	resync := after != nil && before.resourceVersion == after.resourceVersion
	for i, record := range []*secretRecord{before, after} {
		queue := s.queues[record.controllerKind()]
		if queue == nil || (resync && i == 0) {
			continue
		}
		request := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: record.namespace, Name: record.controller.name}}
		if prioritized, ok := queue.(priorityqueue.PriorityQueue[reconcile.Request]); ok && resync {
			prioritized.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(handler.LowPriority)}, request)
		} else {
			queue.Add(request)
		}
	}
}

// get returns the record of the Secret named key, or nil.
func (s *secretRecords) get(key types.NamespacedName) *secretRecord {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byName[key]
}

// recordOf is the record an informer event carries, out of a tombstone if need be.
func recordOf(obj any) *secretRecord {
	if tombstone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	record, _ := obj.(*secretRecord)
	return record
}

// changesOf is the source of a credential controller's Secret events (update):
// the changes of the Secrets that objects of kind control. The controller starts
// once the lookup holds the initial list (WaitForSync), so that no reconcile reads
// live a Secret the cache has.
func (s *secretRecords) changesOf(kind string) source.SyncingSource {
	return secretChanges{records: s, kind: kind}
}

type secretChanges struct {
	records *secretRecords
	kind    string
}

func (c secretChanges) Start(_ context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	c.records.mu.Lock()
	defer c.records.mu.Unlock()
	c.records.queues[c.kind] = queue
	return nil
}

func (c secretChanges) WaitForSync(ctx context.Context) error {
	if !toolscache.WaitForCacheSync(ctx.Done(), c.records.handler.HasSynced) {
		return fmt.Errorf("the manager's Secret records did not sync: %w", ctx.Err())
	}
	return nil
}

func (c secretChanges) String() string { return "Secret records of " + c.kind + "s" }

// digestSecret turns secret, in place, into the form the lifecycle works on.
func digestSecret(secret *corev1.Secret) *corev1.Secret {
	secret.ManagedFields = nil
	secret.StringData = nil
	trimmed := len(secret.Data) > maxDigestDataKeys || metadataBytes(secret) > maxDigestMetadataBytes
	if len(secret.Data) > maxDigestDataKeys {
		secret.Data = nil
	}
	for k, v := range secret.Data {
		secret.Data[k] = digestOf(v)
	}
	if !trimmed {
		return secret
	}
	keptLabels := map[string]string{}
	if v, ok := secret.Labels[ManagedByLabel]; ok {
		keptLabels[ManagedByLabel] = v
	}
	keptAnnotations := map[string]string{trimmedAnnotation: "true"}
	for k, v := range secret.Annotations {
		if strings.HasPrefix(k, latchkeyv1.OperatorKeyPrefix) && len(v) <= 1024 {
			keptAnnotations[k] = v
		}
	}
	secret.Labels, secret.Annotations = keptLabels, keptAnnotations
	secret.Finalizers = nil
	var keptOwners []metav1.OwnerReference
	if owner := metav1.GetControllerOfNoCopy(secret); owner != nil {
		keptOwners = []metav1.OwnerReference{*owner}
	}
	secret.OwnerReferences = keptOwners
	return secret
}

// trimmed reports whether a digest-form Secret is partial (see trimmedAnnotation).
func trimmed(secret *corev1.Secret) bool {
	_, ok := secret.Annotations[trimmedAnnotation]
	return ok
}

// metadataBytes is the size of the metadata a tenant can grow: labels,
// annotations, finalizers and owner references.
func metadataBytes(secret *corev1.Secret) int {
	n := len(secret.GenerateName)
	for _, f := range secret.Finalizers {
		n += len(f)
	}
	for _, o := range secret.OwnerReferences {
		n += len(o.APIVersion) + len(o.Kind) + len(o.Name) + len(o.UID) + 16
	}
	for k, v := range secret.Labels {
		n += len(k) + len(v)
	}
	for k, v := range secret.Annotations {
		n += len(k) + len(v)
	}
	return n
}

// digestOf is what digestSecret makes of a value.
func digestOf(value []byte) []byte {
	sum := sha256.Sum256(value)
	return sum[:]
}
