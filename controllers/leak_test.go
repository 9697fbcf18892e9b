package controllers

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// TestHandleLeaks covers the decisions the envtest specs (tokenserver/leaks_test.go,
// with the real manager) cannot wait for: a week's retention, and the outcome of a
// report whose credential went away before the manager saw it.
func TestHandleLeaks(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	const current, previous, gone = "sha256:current", "sha256:previous", "sha256:gone"
	grace := metav1.NewTime(now.Add(time.Hour))
	key := func(response latchkeyv1.LeakResponse, leaks ...latchkeyv1.LeakRecord) *latchkeyv1.APIKey {
		k := &latchkeyv1.APIKey{}
		k.Name, k.Spec.LeakResponse = "partner", response
		k.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: current}, {Hash: previous, NotAfter: &grace}}
		k.Status.Leaks = leaks
		return k
	}
	report := func(hash string, age time.Duration, outcome latchkeyv1.LeakOutcome) latchkeyv1.LeakRecord {
		return latchkeyv1.LeakRecord{Hash: hash, ReportedAt: metav1.NewTime(now.Add(-age)), Reporter: "github", Outcome: outcome}
	}
	r := &CredentialReconciler[*latchkeyv1.APIKey]{Kind: APIKeyKind{}}
	week := latchkeyv1.LeakRecordRetention

	for _, tc := range []struct {
		name          string
		key           *latchkeyv1.APIKey
		accepted      []string
		outcomes      []latchkeyv1.LeakOutcome
		reason        string // of the Leaked condition; "" for none
		revokedSecret bool   // leakedHashRevoked(current): a new key is issued
	}{
		{"revoke: the current key goes, at once", key(latchkeyv1.LeakResponseRevoke, report(current, 0, "")),
			[]string{previous}, []latchkeyv1.LeakOutcome{latchkeyv1.LeakOutcomeRevoked}, latchkeyv1.ReasonLeakedKeyRevoked, true},
		{"the default is revoke", key("", report(previous, 0, "")),
			[]string{current}, []latchkeyv1.LeakOutcome{latchkeyv1.LeakOutcomeRevoked}, latchkeyv1.ReasonLeakedKeyRevoked, false},
		{"flag: nothing is withdrawn", key(latchkeyv1.LeakResponseFlag, report(current, 0, "")),
			[]string{current, previous}, []latchkeyv1.LeakOutcome{latchkeyv1.LeakOutcomeFlagged}, latchkeyv1.ReasonLeakedKeyAccepted, false},
		{"a report of a key rotated away before the manager saw it", key(latchkeyv1.LeakResponseRevoke, report(gone, 0, "")),
			[]string{current, previous}, []latchkeyv1.LeakOutcome{latchkeyv1.LeakOutcomeNotAccepted}, latchkeyv1.ReasonLeakedKeyRevoked, false},
		{"kept for a week once the key is gone", key(latchkeyv1.LeakResponseRevoke, report(gone, week-time.Second, latchkeyv1.LeakOutcomeRevoked)),
			[]string{current, previous}, []latchkeyv1.LeakOutcome{latchkeyv1.LeakOutcomeRevoked}, latchkeyv1.ReasonLeakedKeyRevoked, false},
		{"then dropped, and the condition with it", key(latchkeyv1.LeakResponseRevoke, report(gone, week, latchkeyv1.LeakOutcomeRevoked)),
			[]string{current, previous}, nil, "", false},
		{"a flagged key still accepted is kept past the week", key(latchkeyv1.LeakResponseFlag, report(current, 2*week, latchkeyv1.LeakOutcomeFlagged)),
			[]string{current, previous}, []latchkeyv1.LeakOutcome{latchkeyv1.LeakOutcomeFlagged}, latchkeyv1.ReasonLeakedKeyAccepted, false},
		{"at most 8 reports of keys gone are kept, the newest", key(latchkeyv1.LeakResponseRevoke, manyResolved(report, gone, 12)...),
			[]string{current, previous}, []latchkeyv1.LeakOutcome{latchkeyv1.LeakOutcomeRevoked, 7: latchkeyv1.LeakOutcomeRevoked}, latchkeyv1.ReasonLeakedKeyRevoked, false},
		{"flag switched to revoke: the flagged key goes now", key(latchkeyv1.LeakResponseRevoke, report(current, time.Hour, latchkeyv1.LeakOutcomeFlagged)),
			[]string{previous}, []latchkeyv1.LeakOutcome{latchkeyv1.LeakOutcomeRevoked}, latchkeyv1.ReasonLeakedKeyRevoked, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.handleLeaks(tc.key, now)
			var accepted []string
			for _, c := range tc.key.Status.Credentials {
				accepted = append(accepted, c.Hash)
			}
			if strings.Join(accepted, " ") != strings.Join(tc.accepted, " ") {
				t.Errorf("accepted %v, want %v", accepted, tc.accepted)
			}
			var outcomes []latchkeyv1.LeakOutcome
			for _, l := range tc.key.Status.Leaks {
				outcomes = append(outcomes, l.Outcome)
			}
			if len(outcomes) != len(tc.outcomes) || (len(outcomes) > 0 && outcomes[0] != tc.outcomes[0]) {
				t.Errorf("outcomes %v, want %v", outcomes, tc.outcomes)
			}
			leaked := meta.FindStatusCondition(tc.key.Status.Conditions, latchkeyv1.ConditionLeaked)
			switch {
			case tc.reason == "" && leaked != nil:
				t.Errorf("Leaked condition %v, want none", leaked)
			case tc.reason != "" && (leaked == nil || leaked.Reason != tc.reason):
				t.Errorf("Leaked condition %v, want reason %s", leaked, tc.reason)
			}
			if got := leakedHashRevoked(tc.key, current); got != tc.revokedSecret {
				t.Errorf("leakedHashRevoked(current) = %v, want %v", got, tc.revokedSecret)
			}
		})
	}
}

// manyResolved is n reports of hash, an hour apart, newest first.
func manyResolved(report func(string, time.Duration, latchkeyv1.LeakOutcome) latchkeyv1.LeakRecord, hash string, n int) []latchkeyv1.LeakRecord {
	out := make([]latchkeyv1.LeakRecord, n)
	for i := range out {
		out[i] = report(hash, time.Duration(i)*time.Hour, latchkeyv1.LeakOutcomeRevoked)
	}
	return out
}

// TestLeakEventsOnce: an outcome is announced by the write that records it, and
// never again by later reconciles.
func TestLeakEventsOnce(t *testing.T) {
	recorder := events.NewFakeRecorder(10)
	r := &CredentialReconciler[*latchkeyv1.APIKey]{Kind: APIKeyKind{}, Recorder: recorder}
	before := &latchkeyv1.APIKey{}
	before.Name = "partner"
	before.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: "sha256:current"}}
	before.Status.Leaks = []latchkeyv1.LeakRecord{{Hash: "sha256:current", Reporter: "github", URL: "https://example.test/x"}}
	decided := before.DeepCopy()
	r.handleLeaks(decided, time.Now())
	withdrawn := decided.DeepCopy()                                                // spec.revoked: nothing issued
	decided.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: "sha256:new"}} // ensureCredential issued one
	r.leakEvents(before, decided)
	r.leakEvents(decided, decided.DeepCopy()) // the next reconcile: nothing changed
	r.leakEvents(before, withdrawn)
	close(recorder.Events)
	var got []string
	for e := range recorder.Events {
		got = append(got, e)
	}
	if len(got) != 2 || !strings.Contains(got[0], "LeakReported") || !strings.Contains(got[0], "a new API key is issued into Secret partner-apikey") ||
		!strings.Contains(got[0], "https://example.test/x") {
		t.Fatalf("events %q, want one LeakReported naming the new key and the URL", got)
	}
	if strings.Contains(got[1], "a new API key") {
		t.Fatalf("with nothing issued, the Event says a new key is: %q", got[1])
	}
}
