package index

import (
	"slices"
	"strings"
	"time"
)

// CoversNamespace reports whether the policy lets its client introspect credentials of namespace.
func (p *IntrospectionPolicy) CoversNamespace(namespace string) bool {
	return p.AllNamespaces || slices.Contains(p.Namespaces, namespace)
}

// ServedScopes keeps the scopes of a space-separated list that the policy serves
// ("orders:*" serves every orders scope), space-separated. When it serves them all
// (the usual case) the list itself is returned, with no allocation.
func (p *IntrospectionPolicy) ServedScopes(scopes string) string {
	all := true
	for scope := range strings.SplitSeq(scopes, " ") {
		all = all && p.Serves(scope)
	}
	if all {
		return scopes
	}
	var served []string
	for scope := range strings.SplitSeq(scopes, " ") {
		if p.Serves(scope) {
			served = append(served, scope)
		}
	}
	return strings.Join(served, " ")
}

func (p *IntrospectionPolicy) Serves(scope string) bool {
	for _, mine := range p.Scopes {
		if scope == mine || (strings.HasSuffix(mine, ":*") && strings.HasPrefix(scope, mine[:len(mine)-1])) {
			return true
		}
	}
	return false
}

func (k *Key) AcceptedAt(now time.Time) bool {
	return (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt)) && (k.NotAfter.IsZero() || now.Before(k.NotAfter))
}

// Expiry is when the key stops being accepted, as a Unix time; 0 when never.
func (k *Key) Expiry() int64 {
	end := k.ExpiresAt
	if !k.NotAfter.IsZero() && (end.IsZero() || k.NotAfter.Before(end)) {
		end = k.NotAfter
	}
	if end.IsZero() {
		return 0
	}
	return end.Unix()
}
