package controllers

import (
	"slices"
	"testing"
	"time"
)

// A namespace whose APIs change in a loop, fast or slow, is rechecked once a
// window, the windows doubling up to apiPaceMax; one quiet for a whole window
// starts again at once; and one namespace's pace is not another's.
func TestAPIPacerRechecksALoopOnceAWindow(t *testing.T) {
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	p := newAPIPacer()
	p.now = func() time.Time { return now }

	// An event every period for 20 minutes; a round is when the credentials an
	// event concerns are rechecked (now + wait), in ms from the first event.
	loop := func(namespace string, from time.Time, period time.Duration) []time.Duration {
		t.Helper()
		rounds := map[time.Duration]bool{}
		for now = from; now.Before(from.Add(20 * time.Minute)); now = now.Add(period) {
			rounds[now.Add(p.wait(namespace)).Sub(from)] = true
			if other := p.wait("victim-" + now.Format("150405.00")); other != 0 {
				t.Fatalf("another namespace's first event waited %s", other)
			}
		}
		var at []time.Duration
		for r := range rounds {
			at = append(at, r)
		}
		slices.Sort(at)
		return at
	}
	seconds := func(s ...float64) []time.Duration {
		var d []time.Duration
		for _, x := range s {
			d = append(d, time.Duration(x*float64(time.Second)))
		}
		return d
	}
	for _, c := range []struct {
		period time.Duration
		want   []time.Duration
	}{
		{100 * time.Millisecond, seconds(0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 811, 1111, 1411)},
		// Just slower than the first window: acted on at once, then paced all the same.
		{1050 * time.Millisecond, seconds(0, 1.05, 3.05, 7.05, 15.05, 31.05, 63.05, 127.05, 255.05, 511.05, 811.05, 1111.05, 1411.05)},
	} {
		if at := loop("mallory", now, c.period); !slices.Equal(at, c.want) {
			t.Errorf("an event every %s for 20 minutes: rounds at %v, want %v", c.period, at, c.want)
		}
		now = now.Add(time.Hour) // quiet: the next loop starts afresh
	}

	// Quiet for a whole window (an hour after the last loop): at once, and the
	// next event a second later too, in a window twice as long.
	const mallory = "mallory"
	if wait := p.wait(mallory); wait != 0 {
		t.Fatalf("after a quiet window: waited %s", wait)
	}
	now = now.Add(time.Second)
	if wait := p.wait(mallory); wait != 0 {
		t.Fatalf("an event a window after the last: waited %s", wait)
	}
	now = now.Add(300 * time.Millisecond)
	if wait := p.wait(mallory); wait != 1700*time.Millisecond {
		t.Fatalf("an event within the window: waited %s, want the window's end", wait)
	}
	if len(p.byNamespace) > 1 {
		t.Fatalf("%d namespaces remembered, where only %s's was active in the last windows", len(p.byNamespace), mallory)
	}
}
