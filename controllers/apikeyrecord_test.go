package controllers

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// issuedAPIKey is an APIKey as the manager leaves a healthy one: issued, its
// scopes known, used this hour.
func issuedAPIKey(name string) *latchkeyv1.APIKey {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	hash := credential.Hash("lk_live_" + name)
	key := &latchkeyv1.APIKey{
		TypeMeta: apiKeyTypeMeta,
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name, UID: types.UID(uuid.NewString()), ResourceVersion: "4711",
			Generation: 1, CreationTimestamp: now, Labels: map[string]string{"team": "a"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: latchkeyv1.APIKeySpec{DisplayName: "CRM sync", Environment: latchkeyv1.EnvironmentLive,
			Scopes: []string{"leads:read", "leads:write"}, CredentialSpec: latchkeyv1.CredentialSpec{LeakResponse: "revoke"}},
	}
	key.Status = latchkeyv1.APIKeyStatus{KeyID: credential.KeyID(hash), Prefix: "lk", CredentialStatus: latchkeyv1.CredentialStatus{
		ObservedGeneration: 1, Serial: 1,
		Credentials: []latchkeyv1.CredentialHash{{Hash: hash, Serial: 1, IssuedAt: now}},
		SecretRef:   &latchkeyv1.SecretReference{Name: name + "-apikey"}, LastUsedAt: &now,
		Conditions: []metav1.Condition{
			{Type: latchkeyv1.ConditionReady, Status: metav1.ConditionTrue, Reason: latchkeyv1.ReasonIssued,
				Message: "API key " + credential.KeyID(hash) + " is in Secret " + name + "-apikey", ObservedGeneration: 1, LastTransitionTime: now},
			ScopesKnownCondition(true, nil, 1),
		},
	}}
	key.Status.Conditions[1].LastTransitionTime = now
	return key
}

// cacheEntry is the manager's cache entry of a decoded key (decoded): a record,
// or the typed object.
func cacheEntry(t *testing.T, key *latchkeyv1.APIKey) client.Object {
	t.Helper()
	entry, err := apiKeyRecordTransform(key.DeepCopy())
	must(t, err)
	return entry.(client.Object)
}

// recordOfKey is the record of a decoded key, which must have one.
func recordOfKey(t *testing.T, key *latchkeyv1.APIKey) *apiKeyRecord {
	t.Helper()
	record, ok := cacheEntry(t, key).(*apiKeyRecord)
	if !ok {
		t.Fatal("the key's cache entry is not a record")
	}
	return record
}

// cacheFormOf is a decoded key in the cache's form (cacheform.go), as the typed cache held it.
func cacheFormOf(t *testing.T, key *latchkeyv1.APIKey) *latchkeyv1.APIKey {
	t.Helper()
	want := key.DeepCopy()
	_, err := cacheTransform(want)
	must(t, err)
	want.TypeMeta = apiKeyTypeMeta
	return want
}

func TestAnAPIKeysRecordHoldsItExactly(t *testing.T) {
	later := metav1.NewTime(time.Now().Add(time.Hour).Truncate(time.Second))
	compact := map[string]func(*latchkeyv1.APIKey){
		"issued": func(*latchkeyv1.APIKey) {},
		"brand new, no status": func(k *latchkeyv1.APIKey) {
			k.Status = latchkeyv1.APIKeyStatus{}
		},
		"rotating, with a rotate request": func(k *latchkeyv1.APIKey) {
			k.Annotations = map[string]string{latchkeyv1.RotateAnnotation: "2026-12-06"}
			previous := k.Status.Credentials[0]
			previous.NotAfter = &later
			k.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: credential.Hash("next"), Serial: 2, IssuedAt: later}, previous}
			k.Status.KeyID = credential.KeyID(credential.Hash("next"))
			k.Status.LastRotatedAt, k.Status.LastRotateRequest, k.Status.Serial = &later, "2026-12-06", 2
		},
		"revoked": func(k *latchkeyv1.APIKey) {
			k.Spec.Revoked = true
			k.Status.Credentials, k.Status.SecretRef = nil, nil
			k.Status.Conditions[0].Status, k.Status.Conditions[0].Reason = metav1.ConditionFalse, latchkeyv1.ReasonRevoked
		},
		"every setting": func(k *latchkeyv1.APIKey) {
			k.Spec.Prefix, k.Spec.Environment, k.Spec.SecretName = "crm", latchkeyv1.EnvironmentTest, "crm-key"
			k.Spec.ExpiresAt, k.Status.ExpiresAt = &later, &later
			k.Spec.Rotation = &latchkeyv1.RotationPolicy{Interval: &metav1.Duration{Duration: 720 * time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Hour}}
			k.Spec.SecretTemplate = &latchkeyv1.SecretTemplate{Labels: map[string]string{"app": "crm"}, Annotations: map[string]string{"note": "x"}}
			k.Spec.RateLimit = &latchkeyv1.RateLimit{Requests: 100, Per: metav1.Duration{Duration: time.Minute}}
			k.Spec.LeakResponse = latchkeyv1.LeakResponse("flag")
		},
		"empty lists, not none": func(k *latchkeyv1.APIKey) {
			k.Spec.Scopes, k.Status.Credentials, k.Status.Conditions = []string{}, []latchkeyv1.CredentialHash{}, []metav1.Condition{}
		},
	}
	full := map[string]func(*latchkeyv1.APIKey){
		"a leak report": func(k *latchkeyv1.APIKey) {
			k.Status.Leaks = []latchkeyv1.LeakRecord{{Hash: k.Status.Credentials[0].Hash, ReportedAt: later, Reporter: "scanner"}}
		},
		"a fractional second": func(k *latchkeyv1.APIKey) {
			fraction := metav1.NewTime(later.Add(500 * time.Millisecond))
			k.Spec.ExpiresAt = &fraction
		},
		"being deleted": func(k *latchkeyv1.APIKey) {
			k.DeletionTimestamp = &later
		},
		"a UID in capitals": func(k *latchkeyv1.APIKey) {
			k.UID = types.UID(fmt.Sprintf("%X", uuid.New()))
		},
		"a key ID that is no 12 hex digits": func(k *latchkeyv1.APIKey) {
			k.Status.KeyID = "ABCDEF012345"
		},
		"a time at the epoch": func(k *latchkeyv1.APIKey) {
			epoch := metav1.NewTime(time.Unix(0, 0))
			k.Status.LastUsedAt = &epoch
		},
		"a secretRef without a name": func(k *latchkeyv1.APIKey) {
			k.Status.SecretRef = &latchkeyv1.SecretReference{}
		},
		"a Secret template's empty labels, which JSON drops as it does none": func(k *latchkeyv1.APIKey) {
			k.Spec.SecretTemplate = &latchkeyv1.SecretTemplate{Labels: map[string]string{}}
		},
		"a scope with a comma, which joins scopes in a shape": func(k *latchkeyv1.APIKey) {
			k.Spec.Scopes = []string{"leads:read,write"}
		},
	}
	for _, c := range []struct {
		cases   map[string]func(*latchkeyv1.APIKey)
		compact bool
	}{{compact, true}, {full, false}} {
		for name, change := range c.cases {
			t.Run(name, func(t *testing.T) {
				key := decoded(t, issuedAPIKey("key")) // times as decoded: local, whole seconds
				change(key)                            // after decoding, which would drop a fraction of a second
				want := cacheFormOf(t, key)
				entry := cacheEntry(t, key)
				if _, got := entry.(*apiKeyRecord); got != c.compact {
					t.Errorf("the entry is compact: %v, want %v", got, c.compact)
				}
				got, ok := entry.DeepCopyObject().(*latchkeyv1.APIKey)
				if !ok || !reflect.DeepEqual(got, want) {
					t.Fatalf("the entry gives\n%+v\nwant the cache form\n%+v", got, want)
				}
				if entry.GetNamespace() != want.Namespace || entry.GetName() != want.Name || entry.GetUID() != want.UID ||
					entry.GetResourceVersion() != want.ResourceVersion || entry.GetGeneration() != want.Generation ||
					!reflect.DeepEqual(entry.GetAnnotations(), want.Annotations) || !reflect.DeepEqual(entry.GetCreationTimestamp(), want.CreationTimestamp) ||
					!reflect.DeepEqual(entry.GetDeletionTimestamp(), want.DeletionTimestamp) {
					t.Error("the entry's metadata is not the object's")
				}
				again, err := apiKeyRecordTransform(entry)
				if err != nil || again != entry {
					t.Error("an entry is transformed again")
				}
			})
		}
	}
}

func TestAnAPIKeysRecordGivesACopyEachTime(t *testing.T) {
	key := issuedAPIKey("key")
	key.Annotations = map[string]string{latchkeyv1.RotateAnnotation: "now"}
	key.Spec.Rotation = &latchkeyv1.RotationPolicy{GracePeriod: &metav1.Duration{Duration: time.Hour}}
	key = decoded(t, key)
	want := cacheFormOf(t, key)
	entry := recordOfKey(t, key)
	changed := entry.DeepCopyObject().(*latchkeyv1.APIKey)
	changed.Spec.Scopes[0] = "changed:scope"
	changed.Annotations[latchkeyv1.RotateAnnotation] = "changed"
	changed.Spec.Rotation.GracePeriod.Duration = time.Minute
	changed.Status.Conditions[0].Message = "changed"
	changed.Status.Credentials[0].Serial = 99
	changed.Status.LastUsedAt.Time = time.Unix(1, 0)
	if got := entry.DeepCopyObject(); !reflect.DeepEqual(got, want) {
		t.Errorf("a change to one copy reached the entry:\n%+v", got)
	}
	a, b := recordOfKey(t, decoded(t, issuedAPIKey("a"))), recordOfKey(t, decoded(t, issuedAPIKey("b")))
	if a.shape != b.shape || a.conditions[0].text != b.conditions[0].text || a.conditions[1].text != b.conditions[1].text {
		t.Error("two keys of one shape, both issued, do not share their shape and their conditions' texts")
	}
}

func TestAnAPIKeysRecordIsReadOnly(t *testing.T) {
	entry := recordOfKey(t, decoded(t, issuedAPIKey("key")))
	defer func() {
		if recover() == nil {
			t.Error("setting a cache entry's field did not panic")
		}
	}()
	entry.SetAnnotations(nil)
}

// BenchmarkAPIKeyCacheEntry reports the live heap one healthy issued APIKey's
// cache entry holds, typed (in the cache's form) and as a record: each iteration
// decodes 10,000 of them into entries and measures the heap after a GC (make
// bench-micro; make bench measures the whole manager).
func BenchmarkAPIKeyCacheEntry(b *testing.B) {
	const n = 10_000
	raw := make([][]byte, n)
	for i := range raw {
		var err error
		if raw[i], err = json.Marshal(issuedAPIKey(fmt.Sprintf("key-%05d", i))); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name      string
		transform func(any) (any, error)
	}{{"typed", cacheTransform}, {"record", apiKeyRecordTransform}} {
		b.Run(c.name, func(b *testing.B) {
			var perKey float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				entries := make([]any, n)
				for i := range raw {
					key := &latchkeyv1.APIKey{}
					if err := json.Unmarshal(raw[i], key); err != nil {
						b.Fatal(err)
					}
					entry, err := c.transform(key)
					if err != nil {
						b.Fatal(err)
					}
					entries[i] = entry
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perKey = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)-int64(n*16)) / n // less the slice of entries
				runtime.KeepAlive(entries)
			}
			b.ReportMetric(perKey, "live-B/key")
		})
	}
}
