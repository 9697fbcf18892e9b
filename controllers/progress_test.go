package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// TestSetProgress covers the verdicts the envtest specs (kstatus_test.go) cannot
// stop at on a live object: a rotation pending for one reconcile, and the
// precedence of a conflict over a scope typo. The live states are there.
func TestSetProgress(t *testing.T) {
	ready := func(status metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: latchkeyv1.ConditionReady, Status: status, Reason: reason, Message: reason + " message"}
	}
	unknownScope := metav1.Condition{Type: latchkeyv1.ConditionScopesKnown, Status: metav1.ConditionFalse,
		Reason: latchkeyv1.ReasonUnknownScope, Message: "scope a:b is in no API's catalogue"}
	rotation := pending{latchkeyv1.ReasonRotationPending, "rotation on request is done on the next reconcile"}
	for _, tc := range []struct {
		name                         string
		conditions                   []metav1.Condition
		work                         pending
		wantReconciling, wantStalled string // reasons; "" for absent
	}{
		{"issued", []metav1.Condition{ready(metav1.ConditionTrue, latchkeyv1.ReasonIssued)}, pending{}, "", ""},
		{"revoked as declared", []metav1.Condition{ready(metav1.ConditionTrue, latchkeyv1.ReasonRevoked)}, pending{}, "", ""},
		{"rotation pending", []metav1.Condition{ready(metav1.ConditionTrue, latchkeyv1.ReasonIssued)}, rotation, latchkeyv1.ReasonRotationPending, ""},
		{"issue failed, retried", []metav1.Condition{ready(metav1.ConditionFalse, latchkeyv1.ReasonIssueFailed)}, pending{}, latchkeyv1.ReasonIssueFailed, ""},
		{"conflict", []metav1.Condition{ready(metav1.ConditionFalse, latchkeyv1.ReasonSecretConflict)}, rotation, "", latchkeyv1.ReasonSecretConflict},
		{"unknown scope on an issued key", []metav1.Condition{ready(metav1.ConditionTrue, latchkeyv1.ReasonIssued), unknownScope}, pending{}, "", latchkeyv1.ReasonUnknownScope},
		{"an unknown scope on a revoked key stalls nothing", []metav1.Condition{ready(metav1.ConditionTrue, latchkeyv1.ReasonRevoked), unknownScope}, pending{}, "", ""},
		{"a rejected Secret", []metav1.Condition{ready(metav1.ConditionFalse, latchkeyv1.ReasonSecretRejected)}, pending{}, "", latchkeyv1.ReasonSecretRejected},
		{"the conflict is named before the typo", []metav1.Condition{ready(metav1.ConditionFalse, latchkeyv1.ReasonClientIDConflict), unknownScope}, pending{}, "", latchkeyv1.ReasonClientIDConflict},
		{"a typo wins over a retry: a person must act", []metav1.Condition{ready(metav1.ConditionFalse, latchkeyv1.ReasonIssueFailed), unknownScope}, rotation, "", latchkeyv1.ReasonUnknownScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Stale abnormal conditions from an earlier verdict must go.
			conditions := append(tc.conditions,
				metav1.Condition{Type: latchkeyv1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: "Earlier"},
				metav1.Condition{Type: latchkeyv1.ConditionStalled, Status: metav1.ConditionTrue, Reason: "Earlier"})
			setProgress(&conditions, 4, tc.work)
			for typ, want := range map[string]string{latchkeyv1.ConditionReconciling: tc.wantReconciling, latchkeyv1.ConditionStalled: tc.wantStalled} {
				got := meta.FindStatusCondition(conditions, typ)
				switch {
				case want == "" && got != nil:
					t.Errorf("%s = %s (%s), want absent", typ, got.Status, got.Reason)
				case want != "" && (got == nil || got.Status != metav1.ConditionTrue || got.Reason != want || got.ObservedGeneration != 4):
					t.Errorf("%s = %+v, want True with reason %s at generation 4", typ, got, want)
				}
			}
		})
	}
}
