package thirdparty

import (
	"crypto/sha256"
	"sync"
	"time"
)

// spentSet remembers what was spent — a login's state, an authorization code —
// until it has expired anyway, so that this replica acts on each at most once.
// Entries live between one and two lifetimes in two generations; a generation
// that fills up (maxEntries) is retired early, which lets the oldest entries be
// spent again only on their way to expiring, by callers its per-source budget
// already bounds.
type spentSet struct {
	lifetime   time.Duration
	maxEntries int

	mu               sync.Mutex
	current, retired map[[32]byte]struct{}
	since            time.Time // when current began
}

func newSpentSet(lifetime time.Duration, maxEntries int) *spentSet {
	return &spentSet{lifetime: lifetime, maxEntries: maxEntries,
		current: map[[32]byte]struct{}{}, retired: map[[32]byte]struct{}{}}
}

// spend marks value spent at now and reports whether it was already.
func (s *spentSet) spend(value string, now time.Time) (already bool) {
	key := sha256.Sum256([]byte(value))
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.since) >= s.lifetime || len(s.current) >= s.maxEntries {
		s.retired, s.current, s.since = s.current, make(map[[32]byte]struct{}, len(s.current)), now
	}
	_, inCurrent := s.current[key]
	_, inRetired := s.retired[key]
	s.current[key] = struct{}{}
	return inCurrent || inRetired
}
