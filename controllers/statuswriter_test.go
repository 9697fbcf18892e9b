package controllers

import (
	"context"
	"errors"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// TestFinalize covers what the envtest specs see only from outside: when
// observedGeneration moves on, that an unchanged status is not written, and that
// a conflict is returned for a kind that does not rebase. The rebase itself is
// proven on the API server (lifecycle_test.go, "a last-use write races").
func TestFinalize(t *testing.T) {
	scheme := runtime.NewScheme()
	must(t, latchkeyv1.AddToScheme(scheme))
	failed := errors.New("the Secret could not be written")
	for _, tc := range []struct {
		name         string
		ready        string // the Ready reason the reconcile set; "" leaves Ready as read
		err          error  // what the reconcile returned
		conflict     bool   // someone writes the object before the patch
		keyID        string // a kind's own status field the reconcile set
		wantObserved int64
		wantWrites   int
		wantErr      []error
	}{
		{"unchanged: no write", "", nil, false, "", 2, 0, nil},
		{"a verdict: written, generation observed", latchkeyv1.ReasonIssued, nil, false, "", 2, 1, nil},
		{"a retried failure is this generation's verdict", latchkeyv1.ReasonIssued, retriedFailure{failed}, false, "", 2, 1, []error{failed}},
		{"a failure before the verdict leaves the generation", latchkeyv1.ReasonIssued, failed, false, "", 1, 1, []error{failed}},
		{"a conflict is returned", latchkeyv1.ReasonIssued, nil, true, "", 2, 0, nil},
		{"a kind's own field alone is written", "", nil, false, "0123456789ab", 2, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			stored := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "key", Generation: 2}}
			stored.Status.ObservedGeneration = 1
			writes := 0
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(stored).WithStatusSubresource(stored).
				WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
					err := c.SubResource(sub).Patch(ctx, obj, patch, opts...)
					if err == nil {
						writes++
					}
					return err
				}}).Build()
			before := &latchkeyv1.APIKey{}
			must(t, c.Get(ctx, client.ObjectKeyFromObject(stored), before))
			if tc.ready == "" { // as a reconcile that finds everything as it was left
				setReadyCondition(&before.Status.Conditions, 2, metav1.ConditionTrue, latchkeyv1.ReasonIssued, "issued")
				before.Status.ObservedGeneration = 2
				must(t, c.Status().Update(ctx, before))
			}
			obj := before.DeepCopy()
			if tc.ready != "" {
				setReadyCondition(&obj.Status.Conditions, 2, metav1.ConditionTrue, tc.ready, "decided")
			}
			obj.Status.KeyID = tc.keyID
			if tc.conflict {
				poked := before.DeepCopy()
				poked.Labels = map[string]string{"poke": "1"}
				must(t, c.Update(ctx, poked))
			}

			reconciler := &CredentialReconciler[*latchkeyv1.APIKey]{Kind: APIKeyKind{}}
			status := statusWriter[*latchkeyv1.APIKey]{client: c, fields: reconciler.statusFields}
			err := status.finalize(ctx, before, obj, pending{}, tc.err)
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("finalize = %v, want %v in it", err, want)
				}
			}
			if tc.conflict != apierrors.IsConflict(err) || (tc.wantErr == nil && !tc.conflict && err != nil) {
				t.Errorf("finalize = %v (conflict %v), want conflict %v", err, apierrors.IsConflict(err), tc.conflict)
			}
			if writes != tc.wantWrites {
				t.Errorf("%d status writes, want %d", writes, tc.wantWrites)
			}
			if obj.Status.ObservedGeneration != tc.wantObserved {
				t.Errorf("observedGeneration = %d, want %d", obj.Status.ObservedGeneration, tc.wantObserved)
			}
		})
	}
}
