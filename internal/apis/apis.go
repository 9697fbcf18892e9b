// Package apis holds the rules about API resources that the manager (which reports
// them in status) and the authorizer (which acts on them) must apply identically.
package apis

import (
	"strings"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// OlderClaim reports whether a's claim to an identifier or a host comes before b's:
// the older object holds it, so that a newcomer can never take over what another
// team's API already serves. Ties (same second) fall to namespace/name, then UID, so
// every replica of every component decides the same way.
func OlderClaim(a, b *latchkeyv1.API) bool {
	ta, tb := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if ka, kb := a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name; ka != kb {
		return ka < kb
	}
	return a.UID < b.UID
}

// ScopeCovered reports whether a credential's scope names something in a catalogue
// of scope names: the scope itself, or, for "resource:*", any scope of that resource.
func ScopeCovered(scope string, has func(name string) bool, hasResource func(resource string) bool) bool {
	if resource, ok := strings.CutSuffix(scope, ":*"); ok {
		return hasResource(resource)
	}
	return has(scope)
}

// GrantsScope reports whether a credential carrying scopes (as written in its spec,
// "orders:*" meaning every orders scope) holds required.
func GrantsScope(scopes []string, required string) bool {
	resource, _, _ := strings.Cut(required, ":")
	for _, s := range scopes {
		if s == required || (strings.HasSuffix(s, ":*") && s[:len(s)-2] == resource) {
			return true
		}
	}
	return false
}
