package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// TestRotationTriggers covers the chain's answers between the moments the envtest
// specs (lifecycle_test.go) reach: which reason is named when both are due, and
// when the next rotation is.
func TestRotationTriggers(t *testing.T) {
	issuedAt := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	hour := &latchkeyv1.RotationPolicy{Interval: &metav1.Duration{Duration: time.Hour}}
	const byRequest, bySchedule = "on request (" + latchkeyv1.RotateAnnotation + ")", "on schedule (every 1h0m0s)"
	key := func(issued bool, rotation *latchkeyv1.RotationPolicy, request, answered string) *latchkeyv1.APIKey {
		key := &latchkeyv1.APIKey{}
		key.Spec.Rotation = rotation
		key.Annotations = map[string]string{latchkeyv1.RotateAnnotation: request}
		key.Status.LastRotateRequest = answered
		if issued {
			key.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: "h", IssuedAt: metav1.NewTime(issuedAt)}}
		}
		return key
	}
	for _, tc := range []struct {
		name string
		key  *latchkeyv1.APIKey
		now  time.Time
		want rotationCheck
	}{
		{"nothing issued: nothing to rotate", key(false, hour, "r1", ""), issuedAt.Add(2 * time.Hour), rotationCheck{}},
		{"no trigger", key(true, nil, "", ""), issuedAt, rotationCheck{}},
		{"a request answered", key(true, nil, "r1", "r1"), issuedAt, rotationCheck{}},
		{"a new request", key(true, nil, "r2", "r1"), issuedAt, rotationCheck{true, byRequest, issuedAt}},
		{"scheduled, not yet", key(true, hour, "", ""), issuedAt.Add(time.Minute), rotationCheck{false, "", issuedAt.Add(time.Hour)}},
		{"scheduled, due on the second", key(true, hour, "", ""), issuedAt.Add(time.Hour), rotationCheck{true, bySchedule, issuedAt.Add(time.Hour)}},
		{"a request is named before the schedule", key(true, hour, "r1", ""), issuedAt.Add(2 * time.Hour), rotationCheck{true, byRequest, issuedAt.Add(time.Hour)}},
		{"a request before the schedule is due now", key(true, hour, "r1", ""), issuedAt.Add(time.Minute), rotationCheck{true, byRequest, issuedAt.Add(time.Minute)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rotationTriggers.evaluate(tc.key, tc.now); got != tc.want {
				t.Errorf("evaluate = %+v, want %+v", got, tc.want)
			}
		})
	}
}
