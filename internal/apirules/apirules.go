// Package apirules holds the rules about API resources that the manager (which reports
// them in status) and the authorizer (which acts on them) must apply identically.
package apirules

import (
	"strings"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// NotNewer reports whether a was created no later than b, so that b's claim to an
// identifier or a host they share gives way to a's. A claim is held only by an API
// that no other claimant is NotNewer than: the oldest, so that a newcomer can never
// take over what another team's API already serves. Creation times have one-second
// precision; claimants created in the same second all give way, and none holds the
// claim: a tie broken by names would let a tenant pick a name that wins.
func NotNewer(a, b *latchkeyv1.API) bool {
	return !b.CreationTimestamp.Time.Before(a.CreationTimestamp.Time)
}

// ScopeCovered reports whether a credential's scope names something in a catalogue
// of scope names: the scope itself, or, for "resource:*", any scope of that resource.
func ScopeCovered(scope string, has func(name string) bool, hasResource func(resource string) bool) bool {
	if resource, ok := strings.CutSuffix(scope, ":*"); ok {
		return hasResource(resource)
	}
	return has(scope)
}

// GrantsScope reports whether a credential carrying scopes (space-separated, as
// written in its spec, "orders:*" meaning every orders scope) holds required.
func GrantsScope(scopes, required string) bool {
	resource, _, _ := strings.Cut(required, ":")
	for s := range strings.FieldsSeq(scopes) {
		if s == required || (strings.HasSuffix(s, ":*") && s[:len(s)-2] == resource) {
			return true
		}
	}
	return false
}
