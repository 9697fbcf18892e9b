package apirules

import (
	"fmt"
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// Limit is a rate limit in the form the authorizer applies and `kubectl latchkey
// status` shows: Requests per Per, Burst at once.
type Limit struct {
	Requests int64
	Per      time.Duration
	Burst    int64
}

// LimitOf compiles a RateLimit; nil for none.
func LimitOf(r *latchkeyv1.RateLimit) *Limit {
	if r == nil || r.Requests < 1 || r.Per.Duration <= 0 {
		return nil
	}
	l := &Limit{Requests: int64(r.Requests), Per: r.Per.Duration, Burst: int64(r.Requests)}
	if r.Burst != nil && *r.Burst >= 1 {
		l.Burst = int64(*r.Burst)
	}
	return l
}

// rate is requests per second.
func (l *Limit) rate() float64 { return float64(l.Requests) / l.Per.Seconds() }

// Lower is the stricter of two limits (nil is no limit), in each of its parts:
// the lower steady rate and the smaller burst, so that a cap can lower a budget
// and never raise any part of it (a low rate with a huge burst is no cap).
func Lower(a, b *Limit) *Limit {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	lower, other := a, b
	if b.rate() < a.rate() {
		lower, other = b, a
	}
	if lower.Burst <= other.Burst {
		return lower
	}
	return &Limit{Requests: lower.Requests, Per: lower.Per, Burst: other.Burst}
}

// CredentialLimit is what applies to one credential on an API whose default is
// apiDefault and whose owner lists override for this credential (nil: none): the
// override if there is one, else the default, lowered by the credential's own
// spec.rateLimit (own). A credential's own spec can only lower its limit: it is
// written in the credential's namespace, by the tenant that holds it, while the
// API's limit is its owner's.
func CredentialLimit(apiDefault, override, own *Limit) *Limit {
	granted := apiDefault
	if override != nil {
		granted = override
	}
	if granted == nil {
		// The API limits nothing: a credential's own limit still applies, as a cap
		// its owner chose.
		return own
	}
	return Lower(granted, own)
}

// APILimit is api's budget for the credential of kind in namespace named name,
// before the credential's own cap: its owner's override, or the default (nil:
// none).
func APILimit(api *latchkeyv1.API, kind latchkeyv1.CredentialKindName, namespace, name string) *Limit {
	rl := api.Spec.RateLimit
	if rl == nil {
		return nil
	}
	for i := range rl.Overrides {
		if o := &rl.Overrides[i]; o.Kind == kind && o.Namespace == namespace && o.Name == name {
			return LimitOf(&o.RateLimit)
		}
	}
	return LimitOf(&rl.RateLimit)
}

// String is "100/1m0s (burst 20)".
func (l *Limit) String() string {
	if l == nil {
		return "none"
	}
	s := fmt.Sprintf("%d per %s", l.Requests, l.Per)
	if l.Burst != l.Requests {
		s += fmt.Sprintf(" (burst %d)", l.Burst)
	}
	return s
}
