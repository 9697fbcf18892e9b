package controllers

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

func TestCachedObjectsShareWhatRepeats(t *testing.T) {
	yes := true
	secret := func(i int) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-shared", Name: fmt.Sprintf("key-%d-apikey", i),
				Labels:          map[string]string{ManagedByLabel: ManagedByValue},
				Annotations:     map[string]string{latchkeyv1.SerialAnnotation: "1"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "latchkey.dev/v1alpha1", Kind: "APIKey", Name: "key", UID: "u", Controller: &yes}}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{latchkeyv1.APIKeySecretKey: []byte("plaintext")},
		}
	}
	cached := func(s *corev1.Secret) *corev1.Secret {
		c, err := digestSecretTransform(decoded(t, s))
		must(t, err)
		return c.(*corev1.Secret)
	}
	a, b := cached(secret(1)), cached(secret(2))
	if !sameMemory(a.Namespace, b.Namespace) || !sameMemory(string(a.Type), string(b.Type)) ||
		!sameMemory(a.OwnerReferences[0].Kind, b.OwnerReferences[0].Kind) || a.OwnerReferences[0].Controller != b.OwnerReferences[0].Controller {
		t.Error("two Secrets of one namespace hold their namespace, type and owner kind each in its own copy")
	}
	for k := range a.Annotations {
		if !sameMemory(k, interned.of(k)) {
			t.Errorf("annotation key %q is not the shared copy", k)
		}
	}
	shared := fmt.Sprintf("%p", managedByLabels)
	if fmt.Sprintf("%p", a.Labels) != shared || fmt.Sprintf("%p", b.Labels) != shared {
		t.Error("a Secret labelled only as ours holds its own labels map")
	}
	read := a.DeepCopy()
	unpackDigests(read)
	if got := read.Data[latchkeyv1.APIKeySecretKey]; len(got) != 32 {
		t.Errorf("cached data is not the digest: %d bytes", len(got))
	}

	templated := secret(3)
	templated.Labels["app"] = "crm"
	if c := cached(templated); c.Labels["app"] != "crm" || fmt.Sprintf("%p", c.Labels) == shared {
		t.Errorf("a Secret with labels of its own lost them: %v", c.Labels)
	}
	// A live read is the lifecycle's to change: it shares nothing with the cache.
	if live := digestSecret(decoded(t, secret(4))); fmt.Sprintf("%p", live.Labels) == shared ||
		live.OwnerReferences[0].Controller == sharedTrue {
		t.Error("a live read holds the cache's shared labels map or owner flag")
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

func TestPackedDigestsRoundTrip(t *testing.T) {
	for _, data := range []map[string][]byte{
		nil,
		{latchkeyv1.APIKeySecretKey: []byte("lk_live_x")},
		{"a": nil, "client-id": []byte("0123"), "client-secret": []byte("s"), "z.y-x_w": []byte("\x00\x00")},
	} {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Annotations: map[string]string{
			latchkeyv1.SerialAnnotation: "1",
			packedDigestsAnnotation:     "forged\x00" + string(make([]byte, 32)), // as a tenant can write it
		}}, Data: data}
		want := digestSecret(decoded(t, secret))
		delete(want.Annotations, packedDigestsAnnotation)
		if len(want.Data) == 0 {
			want.Data = nil
		}

		cached, err := digestSecretTransform(decoded(t, secret))
		must(t, err)
		if c := cached.(*corev1.Secret); c.Data != nil || (len(data) > 0) != (c.Annotations[packedDigestsAnnotation] != "") {
			t.Errorf("%d keys: cached data %v, packed %q", len(data), c.Data, c.Annotations[packedDigestsAnnotation])
		}
		read := cached.(*corev1.Secret).DeepCopy()
		unpackDigests(read)
		if !equality.Semantic.DeepEqual(read, want) {
			t.Errorf("%d keys: unpacked\n%+v\nwant\n%+v", len(data), read, want)
		}
		if _, forged := read.Data["forged"]; forged {
			t.Error("a digest a tenant wrote in the packed annotation was read back")
		}
	}
	// A Secret read live keeps its data and a tenant's packed annotation as they are.
	live := digestSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
		packedDigestsAnnotation: "api-key\x00" + string(make([]byte, 32))}}, Data: map[string][]byte{"api-key": []byte("v")}})
	want := live.DeepCopy()
	unpackDigests(live)
	if !equality.Semantic.DeepEqual(live, want) {
		t.Errorf("a live Secret was unpacked: %+v", live)
	}
}
