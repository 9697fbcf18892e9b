package controllers

import (
	"encoding/hex"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// The manager holds every APIKey of the cluster, so an APIKey's cache entry is
// most of what the manager holds per credential (make bench, "Memory and the
// scale envelope"). As a typed object in the cache's form (cacheform.go) one
// costs about 1.3 KB: a 576-byte struct, a UID, hashes and key IDs as hex
// strings, times with a location each, and its settings and scopes repeated in
// every key that shares them. Its cache entry is an apiKeyRecord instead:
//
//   - UIDs, hashes and key IDs as the bytes they spell, times as Unix seconds;
//   - what keys share (environment, prefixes, scopes, rotation, Secret template,
//     leak response, rate limit) as one apiKeyShape for all of them, and the
//     text of a condition (type, status, reason, message) as one conditionText;
//   - what the manager wrote from the key's own fields, as that: an issued key's
//     Ready message (issuedMessage) and status.secretRef naming its Secret;
//   - and the rest of the object as it is.
//
// A record holds its object exactly or not at all: the transform rebuilds the
// object from the record and keeps the record only if that is deeply equal to the
// object; otherwise (a fractional timestamp, a leak report, a deletion
// timestamp: anything the compact fields do not say) the cache keeps the typed
// object, as it did before records. So a reader can never tell a record from the
// object.
//
// A cached Get or List deep-copies an entry, and the record's DeepCopyObject is
// that rebuild: readers get *latchkeyv1.APIKey as before. What reads the cache's
// entries themselves (event handlers, predicates, index functions) sees the
// record as a read-only client.Object, and asCredential gives the APIKey.
type apiKeyRecord struct {
	namespace, name     string
	resourceVersion     uint64
	uid                 uuid.UUID
	generation, created int64 // created: creationTimestamp in Unix seconds

	shape       *apiKeyShape
	displayName string
	expiresAt   unixTime
	revoked     bool

	keyID                      keyID
	observedGeneration, serial int64
	conditions                 []recordCondition
	credentials                []recordCredential
	lastUsedAt                 unixTime
	// secretRefIsSecret: status.secretRef names the key's Secret (SecretName);
	// another name is in extra.
	secretRefIsSecret bool

	// extra holds what few keys have set, so that the others do not pay for it.
	extra *apiKeyExtra
}

// apiKeyExtra is the part of an APIKey's record that most keys leave unset.
type apiKeyExtra struct {
	annotations                              map[string]string // the two the cache keeps
	secretName, lastRotateRequest, secretRef string
	statusExpiresAt, lastRotatedAt           unixTime
}

// apiKeyShape is what many APIKeys share: their spec but for its names, expiry
// and revocation, and the prefix their key was issued with. The record of every
// key of one shape points at one apiKeyShape (shapes).
type apiKeyShape struct {
	Environment    latchkeyv1.Environment     `json:"e,omitempty"`
	Prefix         string                     `json:"p,omitempty"`
	Scopes         []string                   `json:"s"`
	Rotation       *latchkeyv1.RotationPolicy `json:"r,omitempty"`
	SecretTemplate *latchkeyv1.SecretTemplate `json:"t,omitempty"`
	LeakResponse   latchkeyv1.LeakResponse    `json:"l,omitempty"`
	RateLimit      *latchkeyv1.RateLimit      `json:"rl,omitempty"`
	StatusPrefix   string                     `json:"sp,omitempty"`
	// ScopesNil tells nil scopes from empty ones, which a DeepEqual tells apart.
	ScopesNil bool `json:"sn,omitempty"`
}

// recordCondition is a metav1.Condition with its time in Unix seconds and its
// text shared (conditionTexts).
type recordCondition struct {
	text               *conditionText
	observedGeneration int64
	lastTransition     unixTime
}

// conditionText is what many keys' conditions say alike. issued stands for the
// message issuedMessage makes of the key's own fields, which the key's record
// then does not hold.
type conditionText struct {
	typ, status, reason, message string
	issued                       bool
}

// recordCredential is a CredentialHash with its hash as 32 bytes.
type recordCredential struct {
	digest             [32]byte
	serial             int64
	issuedAt, notAfter unixTime
}

// unixTime is a metav1.Time in whole Unix seconds; 0 is the zero time, or none
// for an optional one (a key with a time at the epoch itself is cached typed).
type unixTime int64

func unixTimeOf(t metav1.Time) unixTime {
	if t.IsZero() {
		return 0
	}
	return unixTime(t.Unix())
}

func unixTimeOfPtr(t *metav1.Time) unixTime {
	if t == nil {
		return 0
	}
	return unixTimeOf(*t)
}

// time is the metav1.Time as decoded from JSON: in the local zone.
func (u unixTime) time() metav1.Time {
	if u == 0 {
		return metav1.Time{}
	}
	return metav1.NewTime(time.Unix(int64(u), 0))
}

func (u unixTime) ptr() *metav1.Time {
	if u == 0 {
		return nil
	}
	t := u.time()
	return &t
}

// keyID is status.keyID, 12 hex digits, as 6 bytes; set is false for none.
type keyID struct {
	bytes [6]byte
	set   bool
}

func keyIDOf(s string) keyID {
	var id keyID
	if n, err := hex.Decode(id.bytes[:], []byte(s)); err == nil && n == len(id.bytes) {
		id.set = true
	}
	return id
}

func (id keyID) String() string {
	if !id.set {
		return ""
	}
	return hex.EncodeToString(id.bytes[:])
}

var apiKeyTypeMeta = metav1.TypeMeta{APIVersion: latchkeyv1.GroupVersion.String(), Kind: "APIKey"}

// apiKeyRecordTransform makes an APIKey's cache entry: the object in the cache's
// form (cacheTransform), as a record if a record says it exactly.
func apiKeyRecordTransform(obj any) (any, error) {
	key, ok := obj.(*latchkeyv1.APIKey)
	if !ok {
		return obj, nil // a record already, or a tombstone
	}
	if _, err := cacheTransform(key); err != nil {
		return nil, err
	}
	key.TypeMeta = apiKeyTypeMeta // the same for all; a Get or List sets it anyway
	if record := compactAPIKey(key); reflect.DeepEqual(record.apiKey(), key) {
		return record, nil
	}
	return key, nil
}

// compactAPIKey is key's record, which may say less than key (apiKeyRecordTransform checks).
func compactAPIKey(key *latchkeyv1.APIKey) *apiKeyRecord {
	uid, _ := uuid.Parse(string(key.UID))
	resourceVersion, _ := strconv.ParseUint(key.ResourceVersion, 10, 64)
	spec, status := &key.Spec, &key.Status
	r := &apiKeyRecord{
		namespace: key.Namespace, name: key.Name, resourceVersion: resourceVersion,
		uid: uid, generation: key.Generation, created: int64(unixTimeOf(key.CreationTimestamp)),
		shape: shapeOf(apiKeyShape{Environment: spec.Environment, Prefix: spec.Prefix, Scopes: spec.Scopes,
			ScopesNil: spec.Scopes == nil, Rotation: spec.Rotation, SecretTemplate: spec.SecretTemplate,
			LeakResponse: spec.LeakResponse, RateLimit: spec.RateLimit, StatusPrefix: status.Prefix}),
		displayName: spec.DisplayName, expiresAt: unixTimeOfPtr(spec.ExpiresAt), revoked: spec.Revoked,
		keyID: keyIDOf(status.KeyID), observedGeneration: status.ObservedGeneration, serial: status.Serial,
		lastUsedAt: unixTimeOfPtr(status.LastUsedAt),
	}
	extra := apiKeyExtra{annotations: key.Annotations, secretName: spec.SecretName, lastRotateRequest: status.LastRotateRequest,
		statusExpiresAt: unixTimeOfPtr(status.ExpiresAt), lastRotatedAt: unixTimeOfPtr(status.LastRotatedAt)}
	if status.SecretRef != nil {
		if status.SecretRef.Name == key.SecretName() {
			r.secretRefIsSecret = true
		} else {
			extra.secretRef = status.SecretRef.Name
		}
	}
	if !reflect.DeepEqual(extra, apiKeyExtra{}) {
		r.extra = &extra
	}
	if status.Conditions != nil {
		issued := issuedMessage(APIKeyKind{}.Name(), status.KeyID, key.SecretName())
		r.conditions = make([]recordCondition, len(status.Conditions))
		for i, c := range status.Conditions {
			text := conditionText{typ: c.Type, status: string(c.Status), reason: c.Reason, message: c.Message}
			if c.Message == issued {
				text.message, text.issued = "", true
			}
			r.conditions[i] = recordCondition{text: conditionTextOf(text), observedGeneration: c.ObservedGeneration,
				lastTransition: unixTimeOf(c.LastTransitionTime)}
		}
	}
	if status.Credentials != nil {
		r.credentials = make([]recordCredential, len(status.Credentials))
		for i, c := range status.Credentials {
			digest, _ := credential.DigestOfHash(c.Hash)
			r.credentials[i] = recordCredential{digest: digest, serial: c.Serial,
				issuedAt: unixTimeOf(c.IssuedAt), notAfter: unixTimeOfPtr(c.NotAfter)}
		}
	}
	return r
}

// apiKey is the object the record holds, freshly built: the caller may change it.
func (r *apiKeyRecord) apiKey() *latchkeyv1.APIKey {
	key := &latchkeyv1.APIKey{TypeMeta: apiKeyTypeMeta}
	key.Namespace, key.Name, key.ResourceVersion = r.namespace, r.name, r.GetResourceVersion()
	key.UID, key.Generation, key.CreationTimestamp = r.GetUID(), r.generation, r.GetCreationTimestamp()
	extra := r.extra
	if extra == nil {
		extra = &apiKeyExtra{}
	}
	if extra.annotations != nil {
		key.Annotations = maps.Clone(extra.annotations)
	}
	shape := r.shape
	key.Spec = latchkeyv1.APIKeySpec{DisplayName: r.displayName, Environment: shape.Environment, Prefix: shape.Prefix,
		CredentialSpec: latchkeyv1.CredentialSpec{ExpiresAt: r.expiresAt.ptr(), Rotation: shape.Rotation.DeepCopy(),
			Revoked: r.revoked, SecretName: extra.secretName, SecretTemplate: shape.SecretTemplate.DeepCopy(),
			LeakResponse: shape.LeakResponse, RateLimit: shape.RateLimit.DeepCopy()}}
	if !shape.ScopesNil {
		key.Spec.Scopes = append(make([]string, 0, len(shape.Scopes)), shape.Scopes...)
	}
	status := &key.Status
	status.KeyID, status.Prefix = r.keyID.String(), shape.StatusPrefix
	status.ObservedGeneration, status.Serial = r.observedGeneration, r.serial
	status.ExpiresAt, status.LastRotatedAt, status.LastUsedAt = extra.statusExpiresAt.ptr(), extra.lastRotatedAt.ptr(), r.lastUsedAt.ptr()
	status.LastRotateRequest = extra.lastRotateRequest
	switch {
	case r.secretRefIsSecret:
		status.SecretRef = &latchkeyv1.SecretReference{Name: key.SecretName()}
	case extra.secretRef != "":
		status.SecretRef = &latchkeyv1.SecretReference{Name: extra.secretRef}
	}
	if r.conditions != nil {
		status.Conditions = make([]metav1.Condition, len(r.conditions))
		for i, c := range r.conditions {
			message := c.text.message
			if c.text.issued {
				message = issuedMessage(APIKeyKind{}.Name(), status.KeyID, key.SecretName())
			}
			status.Conditions[i] = metav1.Condition{Type: c.text.typ, Status: metav1.ConditionStatus(c.text.status), Reason: c.text.reason,
				Message: message, ObservedGeneration: c.observedGeneration, LastTransitionTime: c.lastTransition.time()}
		}
	}
	if r.credentials != nil {
		status.Credentials = make([]latchkeyv1.CredentialHash, len(r.credentials))
		for i, c := range r.credentials {
			status.Credentials[i] = latchkeyv1.CredentialHash{Hash: credential.HashOfDigest(c.digest[:]), Serial: c.serial,
				IssuedAt: c.issuedAt.time(), NotAfter: c.notAfter.ptr()}
		}
	}
	return key
}

// asCredential is the credential a cache entry holds: a record's APIKey, freshly
// built, or the entry itself.
func asCredential(obj any) (CredentialObject, bool) {
	if r, ok := obj.(*apiKeyRecord); ok {
		return r.apiKey(), true
	}
	c, ok := obj.(CredentialObject)
	return c, ok
}

// DeepCopyObject is what a cached Get or List hands out: the APIKey.
func (r *apiKeyRecord) DeepCopyObject() runtime.Object { return r.apiKey() }

func (r *apiKeyRecord) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// A record is a read-only client.Object: it names the object for the informer's
// store, its indexes and the controller's event handlers, and answers what
// predicates ask (generation, annotations). What only a typed entry can have
// (labels, finalizers, a deletion timestamp: cacheForm drops the first two, and
// the third makes the entry typed) a record answers as none. Nothing sets a
// cached object.

func (r *apiKeyRecord) GetNamespace() string    { return r.namespace }
func (r *apiKeyRecord) GetName() string         { return r.name }
func (r *apiKeyRecord) GetGenerateName() string { return "" }
func (r *apiKeyRecord) GetUID() types.UID {
	if r.uid == (uuid.UUID{}) {
		return ""
	}
	return types.UID(r.uid.String())
}
func (r *apiKeyRecord) GetResourceVersion() string {
	if r.resourceVersion == 0 {
		return ""
	}
	return strconv.FormatUint(r.resourceVersion, 10)
}
func (r *apiKeyRecord) GetGeneration() int64                  { return r.generation }
func (r *apiKeyRecord) GetSelfLink() string                   { return "" }
func (r *apiKeyRecord) GetCreationTimestamp() metav1.Time     { return unixTime(r.created).time() }
func (r *apiKeyRecord) GetDeletionTimestamp() *metav1.Time    { return nil }
func (r *apiKeyRecord) GetDeletionGracePeriodSeconds() *int64 { return nil }
func (r *apiKeyRecord) GetLabels() map[string]string          { return nil }
func (r *apiKeyRecord) GetAnnotations() map[string]string {
	if r.extra == nil {
		return nil
	}
	return r.extra.annotations
}
func (r *apiKeyRecord) GetFinalizers() []string                       { return nil }
func (r *apiKeyRecord) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (r *apiKeyRecord) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (r *apiKeyRecord) SetNamespace(string)                           { readOnly() }
func (r *apiKeyRecord) SetName(string)                                { readOnly() }
func (r *apiKeyRecord) SetGenerateName(string)                        { readOnly() }
func (r *apiKeyRecord) SetUID(types.UID)                              { readOnly() }
func (r *apiKeyRecord) SetResourceVersion(string)                     { readOnly() }
func (r *apiKeyRecord) SetGeneration(int64)                           { readOnly() }
func (r *apiKeyRecord) SetSelfLink(string)                            { readOnly() }
func (r *apiKeyRecord) SetCreationTimestamp(metav1.Time)              { readOnly() }
func (r *apiKeyRecord) SetDeletionTimestamp(*metav1.Time)             { readOnly() }
func (r *apiKeyRecord) SetDeletionGracePeriodSeconds(*int64)          { readOnly() }
func (r *apiKeyRecord) SetLabels(map[string]string)                   { readOnly() }
func (r *apiKeyRecord) SetAnnotations(map[string]string)              { readOnly() }
func (r *apiKeyRecord) SetFinalizers([]string)                        { readOnly() }
func (r *apiKeyRecord) SetOwnerReferences([]metav1.OwnerReference)    { readOnly() }
func (r *apiKeyRecord) SetManagedFields([]metav1.ManagedFieldsEntry)  { readOnly() }

func readOnly() { panic("an APIKey's cache entry is read-only: change a copy (a cached Get or List)") }

// shapes and conditionTexts are the manager's tables of what records share.
// Like interned they are bounded: past maxShared entries (or for a value whose
// key is longer than maxSharedLen: a large Secret template, a long message) a
// record gets a value of its own, so that what tenants write can fill a table
// but not grow it.
var (
	shapes         = newSharedTable[string, apiKeyShape]()
	conditionTexts = newSharedTable[conditionText, conditionText]()
)

const (
	maxShared    = 4096
	maxSharedLen = 1024
)

type sharedTable[K comparable, V any] struct {
	mu    sync.Mutex
	byKey map[K]*V
}

func newSharedTable[K comparable, V any]() *sharedTable[K, V] {
	return &sharedTable[K, V]{byKey: map[K]*V{}}
}

// of returns the table's value for key if it is deeply equal to value (a key
// that two values share, as JSON gives an empty map and none alike, must not
// make one stand for the other), or else value, which it adds under key if
// there is room.
func (t *sharedTable[K, V]) of(key K, value V) *V {
	t.mu.Lock()
	defer t.mu.Unlock()
	shared, ok := t.byKey[key]
	switch {
	case ok && reflect.DeepEqual(*shared, value):
		return shared
	case !ok && len(t.byKey) < maxShared:
		t.byKey[key] = &value
	}
	return &value
}

// shapeOf is the shared shape equal to s. Its strings are interned: a shape of
// its own still shares them.
func shapeOf(s apiKeyShape) *apiKeyShape {
	s.Environment = latchkeyv1.Environment(interned.of(string(s.Environment)))
	s.Prefix, s.StatusPrefix = interned.of(s.Prefix), interned.of(s.StatusPrefix)
	s.LeakResponse = latchkeyv1.LeakResponse(interned.of(string(s.LeakResponse)))
	s.Scopes = slices.Clone(s.Scopes) // not the decoded object's, which its reader may change
	internAll(s.Scopes)
	s.Rotation, s.SecretTemplate, s.RateLimit = s.Rotation.DeepCopy(), s.SecretTemplate.DeepCopy(), s.RateLimit.DeepCopy()
	encoded, err := json.Marshal(s)
	if err != nil || len(encoded) > maxSharedLen {
		return &s
	}
	return shapes.of(string(encoded), s)
}

// conditionTextOf is the shared text equal to c.
func conditionTextOf(c conditionText) *conditionText {
	c.typ, c.status, c.reason = interned.of(c.typ), interned.of(c.status), interned.of(c.reason)
	if len(c.message) > maxSharedLen {
		return &c
	}
	return conditionTexts.of(c, c)
}
