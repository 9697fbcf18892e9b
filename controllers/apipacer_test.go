package controllers

import (
	"testing"
	"time"
)

// A namespace whose APIs change in a loop is rechecked once a window, the
// windows doubling up to apiPaceMax; one quiet for a whole window starts again
// at once; and one namespace's pace is not another's.
func TestAPIPacerRechecksALoopOnceAWindow(t *testing.T) {
	start := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	now := start
	p := newAPIPacer()
	p.now = func() time.Time { return now }

	// An event every 100 ms for 20 minutes; a round is when the credentials an
	// event concerns are rechecked (now + wait).
	rounds := map[time.Time]bool{}
	for now = start; now.Before(start.Add(20 * time.Minute)); now = now.Add(100 * time.Millisecond) {
		rounds[now.Add(p.wait("mallory"))] = true
		if other := p.wait("victim-" + now.Format("150405.0")); other != 0 {
			t.Fatalf("another namespace's first event waited %s", other)
		}
	}
	var at []time.Duration
	for r := range rounds {
		at = append(at, r.Sub(start))
	}
	want := []time.Duration{0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 811, 1111, 1411}
	if len(at) != len(want) {
		t.Fatalf("%d rounds in 20 minutes of a loop (%v), want %d", len(at), at, len(want))
	}
	for _, w := range want {
		if !rounds[start.Add(w*time.Second)] {
			t.Errorf("no round at %ds; rounds at %v", w, at)
		}
	}

	// Quiet for a whole window (5 minutes, from the last round's end): at once,
	// and the next event a second later is the next window's, at once too.
	now = start.Add(1411*time.Second + 2*apiPaceMax)
	if wait := p.wait("mallory"); wait != 0 {
		t.Fatalf("after a quiet window: waited %s", wait)
	}
	now = now.Add(time.Second)
	if wait := p.wait("mallory"); wait != 0 {
		t.Fatalf("an event a window after the last: waited %s", wait)
	}
	now = now.Add(300 * time.Millisecond)
	if wait := p.wait("mallory"); wait != 700*time.Millisecond {
		t.Fatalf("an event within the window: waited %s, want the window's end", wait)
	}
	if len(p.byNamespace) > 2 {
		t.Fatalf("%d namespaces remembered, where only mallory's was active in the last windows", len(p.byNamespace))
	}
}
