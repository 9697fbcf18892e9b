package index

import (
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/latchkey-dev/latchkey/internal/credential"
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

// AcceptAPIKey is how every component accepts an API key: the checksum first (a
// mistyped or truncated key costs no lookup), then one SHA-256 and one map lookup,
// then the key's expiry and grace period at now. A revoked key's hashes are already
// gone from the index. It returns the key and its hash's digest; wellFormed is false
// when the checksum or shape is wrong.
func (x *Index) AcceptAPIKey(token string, now time.Time) (key *Key, hash Digest, wellFormed, accepted bool) {
	if !credential.LooksLikeAPIKey(token) {
		return nil, hash, false, false
	}
	hash = DigestOf(token)
	key, ok := x.LookupAPIKey(hash)
	if !ok || !key.AcceptedAt(now) {
		return nil, hash, true, false
	}
	return key, hash, true, true
}

// KeyID is the public identifier of the key with this hash (never the key):
// credential.KeyID of the hash: its first 12 hex digits).
func (d Digest) KeyID() string {
	var id [12]byte
	return string(d.AppendKeyID(id[:0]))
}

// AppendKeyID appends KeyID to b, for an answer written without it as a string.
func (d Digest) AppendKeyID(b []byte) []byte { return hex.AppendEncode(b, d[:6]) }

// ScopesStillGranted keeps the scopes of a token's space-separated scope claim that
// the client still has: narrowing a client narrows its outstanding tokens at once,
// wherever they are checked (introspection, the authorizer).
func (c *Client) ScopesStillGranted(tokenScope string) string {
	var kept []string
	for scope := range strings.SplitSeq(tokenScope, " ") {
		if slices.Contains(c.Scopes, scope) {
			kept = append(kept, scope)
		}
	}
	return strings.Join(kept, " ")
}
