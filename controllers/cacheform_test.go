package controllers

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// decoded is obj as the cache receives it: a fresh decode, sharing no memory with obj.
func decoded[T any](t *testing.T, obj *T) *T {
	t.Helper()
	raw, err := json.Marshal(obj)
	must(t, err)
	out := new(T)
	must(t, json.Unmarshal(raw, out))
	return out
}

func sameMemory(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

func TestCacheFormOfACredentialKeepsWhatTheLifecycleReads(t *testing.T) {
	now := metav1.Now()
	key := &latchkeyv1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "key", UID: "u-1", ResourceVersion: "7", Generation: 3,
			DeletionTimestamp: &now,
			Labels:            map[string]string{"team": "a"},
			Annotations: map[string]string{latchkeyv1.RotateAnnotation: "2026-12-05", corev1.LastAppliedConfigAnnotation: "{}",
				"example.com/padding": string(make([]byte, 64<<10))},
			Finalizers:      []string{"example.com/hold"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "parent", UID: "u-0"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec: latchkeyv1.APIKeySpec{Prefix: "lk", Environment: "live", Scopes: []string{"leads:read"},
			CredentialSpec: latchkeyv1.CredentialSpec{SecretTemplate: &latchkeyv1.SecretTemplate{Labels: map[string]string{"app": "crm"}}}},
	}
	key.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: "sha256:00", Serial: 2, IssuedAt: now}}
	setReadyCondition(&key.Status.Conditions, 3, metav1.ConditionTrue, latchkeyv1.ReasonIssued, "APIKey 00 is in Secret key-apikey")

	want := decoded(t, key)
	want.Labels, want.Finalizers, want.OwnerReferences, want.ManagedFields = nil, nil, nil, nil
	want.Annotations = map[string]string{latchkeyv1.RotateAnnotation: "2026-12-05"}

	cached, err := cacheTransform(decoded(t, key))
	must(t, err)
	if !equality.Semantic.DeepEqual(cached, want) {
		t.Errorf("cached form:\n%+v\nwant:\n%+v", cached, want)
	}
	unchanged, err := cacheTransform(decoded(t, want))
	must(t, err)
	if !equality.Semantic.DeepEqual(unchanged, want) {
		t.Errorf("the cache form of a cached form changed it:\n%+v\nwant:\n%+v", unchanged, want)
	}
}

func TestCacheFormOfOtherObjectsKeepsTheirMetadata(t *testing.T) {
	api := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "crm",
		Labels:        map[string]string{"team": "a"},
		Annotations:   map[string]string{"example.com/note": "x", corev1.LastAppliedConfigAnnotation: "{}"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	cached, err := cacheTransform(decoded(t, api))
	must(t, err)
	got := cached.(*latchkeyv1.API)
	if got.Labels["team"] != "a" || got.Annotations["example.com/note"] != "x" || len(got.Annotations) != 1 || got.ManagedFields != nil {
		t.Errorf("cached API metadata = %+v", got.ObjectMeta)
	}
}

// managedSecret is a Secret as the lifecycle writes it, with the plaintext given.
func managedSecret(i int, plaintext string) *corev1.Secret {
	yes := true
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-shared", Name: fmt.Sprintf("key-%d-apikey", i), UID: types.UID(testUID('s', i).String()),
			ResourceVersion: "42",
			Labels:          map[string]string{ManagedByLabel: ManagedByValue},
			Annotations:     map[string]string{latchkeyv1.SerialAnnotation: "1", latchkeyv1.IssuanceProofAnnotation: "proof"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "latchkey.dev/v1alpha1", Kind: "APIKey", Name: fmt.Sprintf("key-%d", i),
				UID: types.UID(testUID('u', i).String()), Controller: &yes, BlockOwnerDeletion: &yes}}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{latchkeyv1.APIKeySecretKey: []byte(plaintext)},
	}
}

// testUID is a UUID made of c and i.
func testUID(c byte, i int) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprint(string(c), i)))
}

func record(t *testing.T, secret *corev1.Secret) *secretRecord {
	t.Helper()
	r, err := secretRecordTransform(decoded(t, secret))
	must(t, err)
	return r.(*secretRecord)
}

func TestSecretRecordKeepsNamesOwnerAndShapeOnly(t *testing.T) {
	plaintext := "lk_live_0123456789abcdef"
	a, b := record(t, managedSecret(1, plaintext)), record(t, managedSecret(2, plaintext))
	want := secretRecord{namespace: "team-shared", name: "key-1-apikey", uid: testUID('s', 1), resourceVersion: "42",
		controller: secretController{kind: "APIKey", name: "key-1", uid: testUID('u', 1)},
		shape:      secretShape(digestSecret(managedSecret(1, plaintext)))}
	if !reflect.DeepEqual(*a, want) {
		t.Errorf("record = %+v\nwant %+v", *a, want)
	}
	if !sameMemory(a.namespace, b.namespace) || !sameMemory(a.controller.kind, b.controller.kind) {
		t.Error("two records of one namespace hold their namespace and owner kind each in its own copy")
	}
	if dump := fmt.Sprintf("%+v", *a); strings.Contains(dump, plaintext) || strings.Contains(dump, "proof") {
		t.Errorf("the record holds more than names: %s", dump)
	}
	// Whatever a tenant puts in a Secret labelled as ours, the record is as small.
	ballast := managedSecret(3, strings.Repeat("x", 1<<20))
	for i := range 100 {
		ballast.Annotations[fmt.Sprintf("example.com/padding-%d", i)] = strings.Repeat("y", 1<<10)
		ballast.Finalizers = append(ballast.Finalizers, fmt.Sprintf("example.com/hold-%d", i))
	}
	if r := record(t, ballast); len(fmt.Sprintf("%+v", *r)) > 512 {
		t.Errorf("a record of a large Secret: %d characters", len(fmt.Sprintf("%+v", *r)))
	}
	deleting := managedSecret(4, plaintext)
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	if !record(t, deleting).deleting {
		t.Error("a Secret being deleted is not recorded so")
	}
	orphan := managedSecret(5, plaintext)
	orphan.OwnerReferences[0].Controller = nil
	if record(t, orphan).controller != (secretController{}) {
		t.Error("an owner that is not the controller is recorded as one")
	}
	// Of a controller reference, a record keeps only one to an APIKey or an
	// OAuthClient, by a name no longer than a valid one: a tenant can write any.
	for name, change := range map[string]func(*metav1.OwnerReference){
		"another kind":    func(o *metav1.OwnerReference) { o.Kind = "Deployment" },
		"another group":   func(o *metav1.OwnerReference) { o.APIVersion = "example.com/v1" },
		"a long name":     func(o *metav1.OwnerReference) { o.Name = strings.Repeat("n", 254) },
		"a long kind":     func(o *metav1.OwnerReference) { o.Kind = strings.Repeat("K", 1<<20) },
		"an upper UID":    func(o *metav1.OwnerReference) { o.UID = types.UID(strings.ToUpper(string(o.UID))) },
		"a braced UID":    func(o *metav1.OwnerReference) { o.UID = "{" + o.UID + "}" },
		"an unhyphenated": func(o *metav1.OwnerReference) { o.UID = types.UID(strings.ReplaceAll(string(o.UID), "-", "")) },
	} {
		secret := managedSecret(7, plaintext)
		change(&secret.OwnerReferences[0])
		r := record(t, secret)
		if r.controlledBy(&metav1.ObjectMeta{UID: types.UID(testUID('u', 7).String())}) {
			t.Errorf("%s: the record vouches for the owner", name)
		}
		if dump := fmt.Sprintf("%+v", *r); len(dump) > 512 {
			t.Errorf("%s: a record of %d characters", name, len(dump))
		}
	}
	// Another version of our group is ours (controlledBy is by UID, as metav1.IsControlledBy), and costs nothing.
	versioned := managedSecret(8, plaintext)
	versioned.OwnerReferences[0].APIVersion = "latchkey.dev/" + strings.Repeat("v", 1<<20)
	if r := record(t, versioned); !r.controlledBy(&metav1.ObjectMeta{UID: types.UID(testUID('u', 8).String())}) || len(fmt.Sprintf("%+v", *r)) > 512 {
		t.Errorf("a controller of another version of the group: %.512s", fmt.Sprintf("%+v", *r))
	}
	strange := managedSecret(6, plaintext)
	strange.OwnerReferences[0].UID = "not-a-uuid"
	if r := record(t, strange); !r.opaque || r.controlledBy(&metav1.ObjectMeta{UID: "not-a-uuid"}) {
		t.Error("a controller whose UID is not a UUID is taken for the owner of that UID")
	}
	if !a.controlledBy(&metav1.ObjectMeta{UID: types.UID(testUID('u', 1).String())}) || a.controlledBy(&metav1.ObjectMeta{UID: types.UID(testUID('u', 2).String())}) {
		t.Error("controlledBy does not tell the controller from another object")
	}
	// A record or a tombstone passes as it is (the informer never transforms twice, but may hand one back).
	if again, err := secretRecordTransform(a); err != nil || again != any(a) {
		t.Error("a record was transformed again")
	}
}

func TestSecretShapeChangesWithWhatTheLifecycleWrites(t *testing.T) {
	base := secretShape(digestSecret(managedSecret(1, "v")))
	for name, change := range map[string]func(*corev1.Secret){
		"the credential":  func(s *corev1.Secret) { s.Data[latchkeyv1.APIKeySecretKey] = []byte("w") },
		"a data key":      func(s *corev1.Secret) { s.Data["extra"] = nil },
		"no data":         func(s *corev1.Secret) { s.Data = nil },
		"empty data":      func(s *corev1.Secret) { s.Data = map[string][]byte{} },
		"the type":        func(s *corev1.Secret) { s.Type = "example.com/other" },
		"immutable":       func(s *corev1.Secret) { yes := true; s.Immutable = &yes },
		"a label":         func(s *corev1.Secret) { s.Labels["app"] = "crm" },
		"a label's value": func(s *corev1.Secret) { s.Labels[ManagedByLabel] = "other" },
		"an annotation":   func(s *corev1.Secret) { s.Annotations["example.com/note"] = "" },
		"the serial":      func(s *corev1.Secret) { s.Annotations[latchkeyv1.SerialAnnotation] = "2" },
		"the proof":       func(s *corev1.Secret) { s.Annotations[latchkeyv1.IssuanceProofAnnotation] = "forged" },
		"a label, not an annotation": func(s *corev1.Secret) {
			s.Labels[latchkeyv1.SerialAnnotation] = "1"
			delete(s.Annotations, latchkeyv1.SerialAnnotation)
		},
		"the owner":        func(s *corev1.Secret) { s.OwnerReferences[0].UID = "u-2" },
		"the owner's flag": func(s *corev1.Secret) { s.OwnerReferences[0].BlockOwnerDeletion = nil },
		"a second owner": func(s *corev1.Secret) {
			s.OwnerReferences = append(s.OwnerReferences, metav1.OwnerReference{Name: "x"})
		},
		"a key and value run together": func(s *corev1.Secret) {
			delete(s.Annotations, latchkeyv1.IssuanceProofAnnotation)
			s.Annotations[latchkeyv1.IssuanceProofAnnotation+"proof"] = ""
		},
	} {
		secret := managedSecret(1, "v")
		change(secret)
		if secretShape(digestSecret(secret)) == base {
			t.Errorf("changing %s leaves the shape as it was", name)
		}
	}
	for name, change := range map[string]func(*corev1.Secret){
		"finalizers":      func(s *corev1.Secret) { s.Finalizers = []string{"example.com/hold"} },
		"managedFields":   func(s *corev1.Secret) { s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}} },
		"resourceVersion": func(s *corev1.Secret) { s.ResourceVersion = "43" },
		"creation time":   func(s *corev1.Secret) { s.CreationTimestamp = metav1.Now() },
	} {
		secret := managedSecret(1, "v")
		change(secret)
		if secretShape(digestSecret(secret)) != base {
			t.Errorf("changing %s changes the shape", name)
		}
	}
}

func TestCacheFormBoundsRequests(t *testing.T) {
	long := strings.Repeat("r", maxRequestLen+1)
	key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Name: "k", Annotations: map[string]string{
		latchkeyv1.RotateAnnotation: long, latchkeyv1.ReconcileAnnotation: "2026-12-05T18:00:00Z"}}}
	cached, err := cacheTransform(decoded(t, key))
	must(t, err)
	got := cached.(*latchkeyv1.APIKey).Annotations
	if got[latchkeyv1.RotateAnnotation] != credential.Hash(long) || got[latchkeyv1.ReconcileAnnotation] != "2026-12-05T18:00:00Z" {
		t.Errorf("cached requests = %v", got)
	}
	key.Annotations[latchkeyv1.RotateAnnotation] = long + "x"
	again, err := cacheTransform(decoded(t, key))
	must(t, err)
	if again.(*latchkeyv1.APIKey).Annotations[latchkeyv1.RotateAnnotation] == got[latchkeyv1.RotateAnnotation] {
		t.Error("a changed long request reads as the same request")
	}
}

func TestInternTableIsBounded(t *testing.T) {
	table := newInternTable("Ready")
	for i := range maxInterned + 100 {
		table.of(fmt.Sprintf("scope-%d", i))
	}
	if len(table.strings) != maxInterned {
		t.Errorf("the table holds %d strings, want its bound %d", len(table.strings), maxInterned)
	}
	late := fmt.Sprintf("scope-%d", maxInterned+1000)
	if got := table.of(late); got != late || !sameMemory(got, late) {
		t.Error("a string past the bound is not returned as it is")
	}
	fresh := newInternTable()
	fresh.of(string(make([]byte, maxInternedLen+1)))
	if len(fresh.strings) != 0 {
		t.Error("a string longer than maxInternedLen was added")
	}
	if first := table.of(string([]byte("Ready"))); !sameMemory(first, table.of("Ready")) {
		t.Error("a seeded string is not shared")
	}
}
