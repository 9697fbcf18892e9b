package controllers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/issuanceproof"
)

// A reconcile takes an issued credential's Secret from its record, reading
// nothing, only when the record says the Secret is exactly as the lifecycle
// writes it; any other Secret is read live.
func TestAnIssuedCredentialsSecretIsTakenFromItsRecordOnlyWhenItIsAsWritten(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	must(t, latchkeyv1.AddToScheme(scheme))
	must(t, corev1.AddToScheme(scheme))
	raw, err := issuanceproof.NewKey(rand.Reader)
	must(t, err)
	proofKey, err := issuanceproof.ParseKey(raw)
	must(t, err)

	plaintext := "lk_live_0123456789abcdef0123456789abcdef"
	key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "crm", UID: "6f1d3c9e-2b1a-4c5d-8e7f-0a1b2c3d4e5f", Generation: 1},
		Spec: latchkeyv1.APIKeySpec{Prefix: "lk", Environment: "live",
			CredentialSpec: latchkeyv1.CredentialSpec{SecretTemplate: &latchkeyv1.SecretTemplate{Labels: map[string]string{"app": "crm"}}}}}
	key.Status.Serial = 3
	key.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: credential.Hash(plaintext), Serial: 3, IssuedAt: metav1.Now()}}

	// What the lifecycle wrote, as the API server holds it.
	newReconciler := func(live ...client.Object) *CredentialReconciler[*latchkeyv1.APIKey] {
		return &CredentialReconciler[*latchkeyv1.APIKey]{
			Client:    fake.NewClientBuilder().WithScheme(scheme).Build(),
			APIReader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(live...).Build(),
			Kind:      APIKeyKind{}, Keys: &IssuanceKeySource{key: proofKey},
			secrets: &secretRecords{byName: map[types.NamespacedName]*secretRecord{}},
		}
	}
	written, err := newReconciler().desiredSecret(ctx, key, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: key.SecretName()}},
		newReconciler().data(key, []byte(plaintext)), 3, credential.Hash(plaintext))
	must(t, err)
	written.UID, written.ResourceVersion = "1e2d3c4b-5a69-4788-9aab-bccddeeff001", "17"

	t.Run("as written: from the record", func(t *testing.T) {
		r := newReconciler() // the API server has no such Secret: a live read would find none
		r.secrets.byName[client.ObjectKeyFromObject(written)] = record(t, written)
		got, err := r.getSecret(ctx, key, true)
		must(t, err)
		want := digestSecret(decoded(t, written))
		if got == nil || !equality.Semantic.DeepEqual(got.ObjectMeta, want.ObjectMeta) || !equality.Semantic.DeepEqual(got.Data, want.Data) || got.Type != want.Type {
			t.Fatalf("from the record:\n%+v\nwant the Secret as written, in digest form:\n%+v", got, want)
		}
		if state, _, err := r.classify(ctx, key, got); err != nil || state != secretCurrent {
			t.Errorf("the Secret from its record classifies as %v, %v", state, err)
		}
	})

	t.Run("another's: its stub, from the record", func(t *testing.T) {
		r := newReconciler() // nothing to read live
		another := decoded(t, written)
		another.OwnerReferences[0].UID = "0f1d3c9e-2b1a-4c5d-8e7f-0a1b2c3d4e5f"
		r.secrets.byName[client.ObjectKeyFromObject(another)] = record(t, another)
		got, err := r.getSecret(ctx, key, true)
		must(t, err)
		if got == nil || metav1.IsControlledBy(got, key) || got.Name != written.Name {
			t.Errorf("got %+v, want a Secret of that name that the key does not control", got)
		}
	})

	t.Run("as written, but the issuance key unreadable: read live", func(t *testing.T) {
		live := decoded(t, written)
		live.Labels["example.com/read"] = "live" // only a live read has it
		r := newReconciler(live)
		r.Keys = &IssuanceKeySource{Client: r.Client, APIReader: r.APIReader, Namespace: "latchkey-system", Name: "issuance-key",
			Random: failingReader{}} // no key Secret, and none can be made
		r.secrets.byName[client.ObjectKeyFromObject(written)] = record(t, written)
		got, err := r.getSecret(ctx, key, true)
		if err != nil || got == nil || got.Labels["example.com/read"] != "live" {
			t.Errorf("got %+v, %v; want the live Secret, whatever the key: a revocation waits for no key", got, err)
		}
	})

	tampered := func(change func(*corev1.Secret)) *corev1.Secret {
		s := decoded(t, written)
		change(s)
		return s
	}
	for name, secret := range map[string]*corev1.Secret{
		"a credential of someone's":   tampered(func(s *corev1.Secret) { s.Data[latchkeyv1.APIKeySecretKey] = []byte("lk_live_planted") }),
		"a label of someone's":        tampered(func(s *corev1.Secret) { s.Labels["example.com/x"] = "y" }),
		"being deleted":               tampered(func(s *corev1.Secret) { now := metav1.Now(); s.DeletionTimestamp = &now; s.Finalizers = []string{"x"} }),
		"an older serial":             tampered(func(s *corev1.Secret) { s.Annotations[latchkeyv1.SerialAnnotation] = "2" }),
		"the template's label edited": tampered(func(s *corev1.Secret) { s.Labels["app"] = "billing" }),
	} {
		t.Run(name+": read live", func(t *testing.T) {
			r := newReconciler(decoded(t, secret))
			r.secrets.byName[client.ObjectKeyFromObject(secret)] = record(t, secret)
			got, err := r.getSecret(ctx, key, false)
			must(t, err)
			if got == nil {
				t.Fatal("no Secret")
			}
			live := sha256.Sum256(secret.Data[latchkeyv1.APIKeySecretKey])
			if string(got.Data[latchkeyv1.APIKeySecretKey]) != string(live[:]) || !equality.Semantic.DeepEqual(got.Labels, secret.Labels) ||
				!equality.Semantic.DeepEqual(got.OwnerReferences, secret.OwnerReferences) || got.Annotations[latchkeyv1.SerialAnnotation] != secret.Annotations[latchkeyv1.SerialAnnotation] {
				t.Errorf("got %+v, want the live Secret in digest form", got)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no randomness here") }

// A Secret's change is recorded before its owners are enqueued, and enqueues the
// owners it had before and after; its creation enqueues nothing, and a resync its
// owner below every change.
func TestSecretRecordsEnqueueTheOwnersOfAChange(t *testing.T) {
	q := newTestFairQueue(t)
	s := &secretRecords{byName: map[types.NamespacedName]*secretRecord{},
		queues: map[string]workqueue.TypedRateLimitingInterface[reconcile.Request]{"APIKey": q}}
	owned := func(owner, rv string) *secretRecord {
		return &secretRecord{namespace: "team-a", name: "s", resourceVersion: rv, controller: secretController{kind: "APIKey", name: owner}}
	}
	drain := func() (got []string) {
		for q.Len() > 0 {
			item, priority := next(t, q)
			got = append(got, fmt.Sprint(item.Name, "@", priority))
		}
		return got
	}
	v1, v2 := owned("a", "1"), owned("b", "2")
	s.update(nil, v1)
	if got := drain(); len(got) != 0 || s.get(types.NamespacedName{Namespace: "team-a", Name: "s"}) != v1 {
		t.Errorf("a creation: enqueued %v, recorded %v", got, s.get(types.NamespacedName{Namespace: "team-a", Name: "s"}))
	}
	s.update(v1, v2)
	if got := drain(); fmt.Sprint(got) != "[a@0 b@0]" || s.get(types.NamespacedName{Namespace: "team-a", Name: "s"}) != v2 {
		t.Errorf("a change of owner: enqueued %v", got)
	}
	s.update(v2, v2)
	if got := drain(); fmt.Sprint(got) != fmt.Sprintf("[b@%d]", handler.LowPriority) {
		t.Errorf("a resync: enqueued %v", got)
	}
	s.update(v2, nil)
	if got := drain(); fmt.Sprint(got) != "[b@0]" || s.get(types.NamespacedName{Namespace: "team-a", Name: "s"}) != nil {
		t.Errorf("a deletion: enqueued %v", got)
	}
	foreign := &secretRecord{namespace: "team-a", name: "t", resourceVersion: "3"}
	s.update(foreign, &secretRecord{namespace: "team-a", name: "t", resourceVersion: "4"})
	if got := drain(); len(got) != 0 {
		t.Errorf("a Secret of no credential's: enqueued %v", got)
	}
}
