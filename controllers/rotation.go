package controllers

import (
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// Rotation triggers are cert-manager's re-issuance policies in small
// (internal/controller/certificates/policies): each reason to replace the current
// credential is a named function, and rotationTriggers chains them. The lifecycle
// asks the chain three questions, always the same way: whether to rotate now
// (ensureCredential), whether a rotation is still pending (Reconcile's
// RotationPending), and when to wake up for the next one (nextEvent).
//
// Adoption is no trigger of its own: adopting a credential leaves the rotate
// request unanswered (see ensureCredential), so rotateRequested is still due.
var rotationTriggers = rotationChain{rotateRequested, rotationScheduled}

// rotationCheck is a trigger's answer, or the chain's.
type rotationCheck struct {
	due bool
	// why completes "Rotated …" in the Event and "rotation … is done on the next
	// reconcile" in the RotationPending condition: "on request (latchkey.dev/rotate)".
	why string
	// next is when the trigger is due (now, if it is): zero when it never is by itself.
	next time.Time
}

// rotationTrigger is one reason to rotate obj's current credential, which exists.
type rotationTrigger func(obj CredentialObject, now time.Time) rotationCheck

type rotationChain []rotationTrigger

// evaluate is due when a trigger is, with the reason of the first that is (a
// request is named before the schedule), and next the earliest of the triggers'.
// Nothing is due before a credential is issued.
func (c rotationChain) evaluate(obj CredentialObject, now time.Time) rotationCheck {
	var result rotationCheck
	if len(obj.CredentialStatus().Credentials) == 0 {
		return result
	}
	for _, trigger := range c {
		check := trigger(obj, now)
		if check.due && !result.due {
			result.due, result.why = true, check.why
		}
		result.next = earliest(result.next, check.next)
	}
	return result
}

// rotateRequested: the rotate annotation holds a request the status has not
// recorded as answered (LastRotateRequest).
func rotateRequested(obj CredentialObject, now time.Time) rotationCheck {
	request := obj.GetAnnotations()[latchkeyv1.RotateAnnotation]
	if request == "" || request == obj.CredentialStatus().LastRotateRequest {
		return rotationCheck{}
	}
	return rotationCheck{due: true, why: "on request (" + latchkeyv1.RotateAnnotation + ")", next: now}
}

// rotationScheduled: spec.rotation.interval has passed since the current credential was issued.
func rotationScheduled(obj CredentialObject, now time.Time) rotationCheck {
	rotation := obj.Lifecycle().Rotation
	if rotation == nil || rotation.Interval == nil {
		return rotationCheck{}
	}
	at := obj.CredentialStatus().Credentials[0].IssuedAt.Add(rotation.Interval.Duration)
	return rotationCheck{due: !now.Before(at), why: "on schedule (every " + rotation.Interval.Duration.String() + ")", next: at}
}

// gracePeriod is how long a rotated-out credential stays accepted.
func gracePeriod(obj CredentialObject) time.Duration {
	if r := obj.Lifecycle().Rotation; r != nil && r.GracePeriod != nil {
		return r.GracePeriod.Duration
	}
	d, _ := time.ParseDuration(latchkeyv1.DefaultGracePeriod)
	return d
}

// earliest is the earlier of two moments, a zero one meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
