package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// retriedReasons are the Ready=False reasons the operator gets past by itself,
// retrying with backoff. Every other Ready=False reason waits on a person.
var retriedReasons = map[string]bool{
	latchkeyv1.ReasonIssueFailed: true,
}

// pending says why an object that is otherwise settled still has work queued (a
// rotation to do on the next reconcile); the zero value says it has none.
type pending struct {
	reason, message string
}

// setProgress derives the kstatus conditions (Reconciling, Stalled) from Ready
// and ScopesKnown, which every reconciler of every kind has set just before, so
// that kubectl, Flux, Argo CD and kstatus read one verdict:
//
//   - Ready=False with a reason that is not retried (a conflict) → Stalled=True (Failed);
//   - ScopesKnown=False (a scope no API lists) → Stalled=True (Failed), unless the
//     credential is revoked or expired as declared: an API retired elsewhere must
//     not fail the sync of keys nobody uses any more;
//   - otherwise, Ready=False with a retried reason, or work pending → Reconciling=True (InProgress);
//   - otherwise neither is present, and Ready=True with observedGeneration
//     current reads as Current.
//
// The two never hold together: kstatus takes whichever comes first in the list,
// and what a person must fix should fail a sync, not keep it waiting.
//
// A condition that does not hold is removed rather than set False, as Flux does:
// at 100,000 objects two conditions fewer per status is worth it, and kstatus
// treats absent and False alike.
func setProgress(conditions *[]metav1.Condition, generation int64, work pending) {
	var reconciling, stalled *metav1.Condition
	ready := meta.FindStatusCondition(*conditions, latchkeyv1.ConditionReady)
	scopes := meta.FindStatusCondition(*conditions, latchkeyv1.ConditionScopesKnown)
	switch {
	case ready != nil && ready.Status == metav1.ConditionFalse && !retriedReasons[ready.Reason]:
		stalled = &metav1.Condition{Reason: ready.Reason, Message: ready.Message}
	case scopes != nil && scopes.Status == metav1.ConditionFalse && !withdrawnAsDeclared(ready):
		stalled = &metav1.Condition{Reason: scopes.Reason, Message: scopes.Message}
	case ready != nil && ready.Status == metav1.ConditionFalse:
		reconciling = &metav1.Condition{Reason: ready.Reason, Message: ready.Message}
	case work.reason != "":
		reconciling = &metav1.Condition{Reason: work.reason, Message: work.message}
	}
	setAbnormal(conditions, latchkeyv1.ConditionReconciling, generation, reconciling)
	setAbnormal(conditions, latchkeyv1.ConditionStalled, generation, stalled)
}

// setAbnormal sets an abnormal-true condition of type t to True with c's reason
// and message, or removes it when c is nil.
func setAbnormal(conditions *[]metav1.Condition, t string, generation int64, c *metav1.Condition) {
	if c == nil {
		meta.RemoveStatusCondition(conditions, t)
		return
	}
	meta.SetStatusCondition(conditions, metav1.Condition{
		Type: t, Status: metav1.ConditionTrue, Reason: c.Reason, Message: c.Message, ObservedGeneration: generation,
	})
}

// setReadyCondition sets the Ready condition of an object at generation and
// reports whether its reason changed (setCondition), so that callers record an
// Event only on a transition.
func setReadyCondition(conditions *[]metav1.Condition, generation int64, status metav1.ConditionStatus, reason, message string) bool {
	return setCondition(conditions, metav1.Condition{
		Type:               latchkeyv1.ConditionReady,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
	})
}

// setCondition sets a condition and reports whether its reason changed. Each
// reason goes with one status, so that is the transition; and a status flip under
// the same reason (Revoked went from False to True when Ready came to mean the
// declared state) is no news: no Event, no retired serial.
func setCondition(conditions *[]metav1.Condition, condition metav1.Condition) bool {
	previous := meta.FindStatusCondition(*conditions, condition.Type)
	changed := previous == nil || previous.Reason != condition.Reason
	meta.SetStatusCondition(conditions, condition)
	return changed
}

// withdrawnAsDeclared: Ready says the credential is revoked or expired, as its spec says.
func withdrawnAsDeclared(ready *metav1.Condition) bool {
	return ready != nil && ready.Status == metav1.ConditionTrue &&
		(ready.Reason == latchkeyv1.ReasonRevoked || ready.Reason == latchkeyv1.ReasonExpired)
}
