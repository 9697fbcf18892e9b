package controllers

import (
	"encoding/hex"
	"encoding/json"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unique"

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
// record as a read-only client.Object and reads its fields (scopes). Two things
// therefore do not work with this cache: a Get or List of APIKeys with
// UnsafeDisableDeepCopy (it would hand out records where APIKeys are asked for),
// and client-go's KUBE_CACHE_MUTATION_DETECTOR (it expects a deep copy of the
// entry's own type).
type apiKeyRecord struct {
	namespace, name     string
	resourceVersion     uint64
	uid                 uuid.UUID
	generation, created int64 // created: creationTimestamp in Unix seconds

	shape       unique.Handle[apiKeyShape]
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
// and revocation, and the prefix their key was issued with. Records hold it as a
// unique.Handle: every key of one shape points at one copy, which the garbage
// collector frees once no record does, so that neither a tenant's many shapes
// nor a long run's accumulate.
type apiKeyShape struct {
	environment, prefix, statusPrefix, leakResponse string
	// scopes are joined by commas (the schema's pattern allows none in a scope);
	// scopesSet tells an empty list from none.
	scopes    string
	scopesSet bool
	// rotation, secretTemplate and rateLimit are JSON, "" for none.
	rotation, secretTemplate, rateLimit string
}

// recordCondition is a metav1.Condition with its time in Unix seconds and its
// text shared, as shapes are.
type recordCondition struct {
	text               unique.Handle[conditionText]
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
// form (cacheTransform's), as a record if a record says it exactly.
func apiKeyRecordTransform(obj any) (any, error) {
	key, ok := obj.(*latchkeyv1.APIKey)
	if !ok {
		return obj, nil // a record already, or a tombstone
	}
	cacheForm(key)
	internMeta(key)
	key.TypeMeta = apiKeyTypeMeta // the same for all; a Get or List sets it anyway
	if record := compactAPIKey(key); reflect.DeepEqual(record.apiKey(), key) {
		return record, nil
	}
	internCredential(key) // what a record shares by its handles, a typed key by interning
	return key, nil
}

// compactAPIKey is key's record, which may say less than key: what it cannot
// parse (a UID, a resourceVersion, a hash) it leaves zero, and
// apiKeyRecordTransform, which compares the record's rebuild with key, keeps
// the typed key then.
func compactAPIKey(key *latchkeyv1.APIKey) *apiKeyRecord {
	uid, _ := uuid.Parse(string(key.UID))
	resourceVersion, _ := strconv.ParseUint(key.ResourceVersion, 10, 64)
	spec, status := &key.Spec, &key.Status
	r := &apiKeyRecord{
		namespace: key.Namespace, name: key.Name, resourceVersion: resourceVersion,
		uid: uid, generation: key.Generation, created: int64(unixTimeOf(key.CreationTimestamp)),
		shape: unique.Make(apiKeyShape{environment: string(spec.Environment), prefix: spec.Prefix, statusPrefix: status.Prefix,
			leakResponse: string(spec.LeakResponse), scopes: strings.Join(spec.Scopes, ","), scopesSet: spec.Scopes != nil,
			rotation: jsonOf(spec.Rotation), secretTemplate: jsonOf(spec.SecretTemplate), rateLimit: jsonOf(spec.RateLimit)}),
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
			r.conditions[i] = recordCondition{text: unique.Make(text), observedGeneration: c.ObservedGeneration,
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
	shape := r.shape.Value()
	key.Spec = latchkeyv1.APIKeySpec{DisplayName: r.displayName, Environment: latchkeyv1.Environment(shape.environment),
		Prefix: shape.prefix, Scopes: r.scopes(),
		CredentialSpec: latchkeyv1.CredentialSpec{ExpiresAt: r.expiresAt.ptr(), Rotation: fromJSON[latchkeyv1.RotationPolicy](shape.rotation),
			Revoked: r.revoked, SecretName: extra.secretName, SecretTemplate: fromJSON[latchkeyv1.SecretTemplate](shape.secretTemplate),
			LeakResponse: latchkeyv1.LeakResponse(shape.leakResponse), RateLimit: fromJSON[latchkeyv1.RateLimit](shape.rateLimit)}}
	status := &key.Status
	status.KeyID, status.Prefix = r.keyID.String(), shape.statusPrefix
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
			text := c.text.Value()
			message := text.message
			if text.issued {
				message = issuedMessage(APIKeyKind{}.Name(), status.KeyID, key.SecretName())
			}
			status.Conditions[i] = metav1.Condition{Type: text.typ, Status: metav1.ConditionStatus(text.status), Reason: text.reason,
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

// scopes are spec.scopes, a new slice of shared strings.
func (r *apiKeyRecord) scopes() []string {
	shape := r.shape.Value()
	switch {
	case !shape.scopesSet:
		return nil
	case shape.scopes == "":
		return []string{}
	}
	return strings.Split(shape.scopes, ",")
}

// jsonOf is v as JSON, "" for none (or for what does not encode: the record's
// rebuild then differs, and the key is cached typed).
func jsonOf[T any](v *T) string {
	if v == nil {
		return ""
	}
	encoded, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(encoded)
}

// fromJSON is jsonOf's inverse: a new value, nil for "".
func fromJSON[T any](encoded string) *T {
	if encoded == "" {
		return nil
	}
	v := new(T)
	if err := json.Unmarshal([]byte(encoded), v); err != nil {
		return nil
	}
	return v
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
