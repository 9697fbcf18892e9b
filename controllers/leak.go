package controllers

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// Leak reports arrive in status.leaks: the token server writes one when a secret
// scanner, or someone holding the credential, reports a credential this object
// accepts (an admission policy lets it add nothing else). The manager acts on
// them here, before anything else in a reconcile, so that a revocation is never
// held up by a Secret that cannot be written.

// handleLeaks acts on obj's leak reports at now. With spec.leakResponse revoke
// (the default), a reported credential stops being accepted at once, with no
// grace period; ensureCredential then finds the Secret holding it (secretLeaked)
// and issues a new one. Each report gets its outcome once (announced by
// leakEvents once written). A report whose credential is no longer accepted is
// dropped LeakRecordRetention after it was made, and at most
// MaxResolvedLeakRecords of them are kept. The Leaked condition says where
// things stand. It runs at the start of a reconcile (a revocation must not wait
// for anything) and at its end (credentials withdrawn or pruned meanwhile).
func (r *CredentialReconciler[T]) handleLeaks(obj T, now time.Time) {
	status := obj.CredentialStatus()
	revoke := obj.Lifecycle().LeakResponse != latchkeyv1.LeakResponseFlag
	kept := status.Leaks[:0]
	for _, l := range status.Leaks {
		i := slices.IndexFunc(status.Credentials, func(c latchkeyv1.CredentialHash) bool { return c.Hash == l.Hash })
		accepted := i >= 0
		switch {
		case accepted && revoke:
			status.Credentials = slices.Delete(status.Credentials, i, i+1)
			l.Outcome = latchkeyv1.LeakOutcomeRevoked
		case accepted:
			l.Outcome = latchkeyv1.LeakOutcomeFlagged
		case !now.Before(l.ReportedAt.Add(latchkeyv1.LeakRecordRetention)):
			continue // no longer accepted, and reported long enough ago: dropped
		case l.Outcome != latchkeyv1.LeakOutcomeRevoked:
			l.Outcome = latchkeyv1.LeakOutcomeNotAccepted // rotated away, revoked or expired since
		}
		kept = append(kept, l)
	}
	// The newest reports whose credential is gone are kept, the rest dropped: a
	// new report must always find room (the token server may add, never remove).
	resolved := 0
	kept = slices.DeleteFunc(kept, func(l latchkeyv1.LeakRecord) bool {
		if l.Outcome == latchkeyv1.LeakOutcomeFlagged || l.Outcome == "" {
			return false
		}
		resolved++
		return resolved > latchkeyv1.MaxResolvedLeakRecords
	})
	status.Leaks = kept
	if len(kept) == 0 {
		status.Leaks = nil
	}
	r.setLeakedCondition(obj)
}

// leakEvents announces, with a Warning Event each, the outcomes that the status
// write of a reconcile of before into written recorded: after the write, so that
// a write that lost its optimistic lock (and is decided again) announces nothing.
func (r *CredentialReconciler[T]) leakEvents(before, written T) {
	for _, l := range written.CredentialStatus().Leaks {
		i := slices.IndexFunc(before.CredentialStatus().Leaks, func(b latchkeyv1.LeakRecord) bool { return b.Hash == l.Hash })
		if i >= 0 && before.CredentialStatus().Leaks[i].Outcome == l.Outcome {
			continue
		}
		switch l.Outcome {
		case latchkeyv1.LeakOutcomeRevoked:
			next := ""
			wasCurrent := slices.ContainsFunc(before.CredentialStatus().Credentials, func(c latchkeyv1.CredentialHash) bool {
				return c.Hash == l.Hash && c.NotAfter == nil
			})
			if now := written.CredentialStatus().Credentials; wasCurrent && len(now) > 0 && now[0].NotAfter == nil {
				next = fmt.Sprintf("; a new %s is issued into Secret %s", r.Kind.Name(), written.SecretName())
			}
			r.event(written, corev1.EventTypeWarning, latchkeyv1.ReasonLeakReported, "%s; it is no longer accepted%s", r.leakNote(l), next)
		case latchkeyv1.LeakOutcomeFlagged:
			r.event(written, corev1.EventTypeWarning, latchkeyv1.ReasonLeakReported,
				"%s; it is still accepted (spec.leakResponse: flag): rotate or revoke it", r.leakNote(l))
		}
	}
}

// leakedHashRevoked reports whether a report of hash made obj stop accepting it:
// a Secret that still holds it needs a new credential.
func leakedHashRevoked(obj CredentialObject, hash string) bool {
	return slices.ContainsFunc(obj.CredentialStatus().Leaks, func(l latchkeyv1.LeakRecord) bool {
		return l.Hash == hash && l.Outcome == latchkeyv1.LeakOutcomeRevoked
	})
}

// setLeakedCondition: absent without reports; LeakedKeyAccepted while a reported
// credential is still accepted; LeakedKeyRevoked, naming the newest report, once
// none is.
func (r *CredentialReconciler[T]) setLeakedCondition(obj T) {
	status := obj.CredentialStatus()
	if len(status.Leaks) == 0 {
		meta.RemoveStatusCondition(&status.Conditions, latchkeyv1.ConditionLeaked)
		return
	}
	reason, shown := latchkeyv1.ReasonLeakedKeyRevoked, status.Leaks[0]
	message := r.leakNote(shown) + "; it is no longer accepted"
	for i := range status.Leaks {
		if l := status.Leaks[i]; l.Outcome == latchkeyv1.LeakOutcomeFlagged {
			reason = latchkeyv1.ReasonLeakedKeyAccepted
			message = r.leakNote(l) + "; it is still accepted (spec.leakResponse: flag): rotate or revoke it"
			break
		}
	}
	setCondition(&status.Conditions, metav1.Condition{Type: latchkeyv1.ConditionLeaked, Status: metav1.ConditionTrue,
		ObservedGeneration: obj.GetGeneration(), Reason: reason, Message: message})
}

// leakNote says which credential was reported, by whom, when and where. Only
// what a signed report says: the URL of a self-report is never recorded.
func (r *CredentialReconciler[T]) leakNote(l latchkeyv1.LeakRecord) string {
	note := fmt.Sprintf("%s %s was reported public by %s at %s", r.Kind.Name(), credential.KeyID(l.Hash), l.Reporter,
		l.ReportedAt.UTC().Format(time.RFC3339))
	if l.URL != "" {
		note += " (found at " + l.URL + ")"
	}
	return note
}

// leakRecordExpiry is when the first report still kept whose credential is no
// longer accepted is dropped; zero when none is.
func leakRecordExpiry(obj CredentialObject) time.Time {
	var next time.Time
	for _, l := range obj.CredentialStatus().Leaks {
		if l.Outcome != latchkeyv1.LeakOutcomeFlagged {
			next = earliest(next, l.ReportedAt.Add(latchkeyv1.LeakRecordRetention))
		}
	}
	return next
}
