package tokenserver

import (
	"crypto/subtle"
	"encoding/hex"
	"strings"
	"sync"
	"time"
	"unique"

	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// digest is a raw SHA-256: 32 bytes as a map key instead of 71 characters of "sha256:<hex>".
type digest [32]byte

// parseHash turns "sha256:<hex>" into a digest.
func parseHash(s string) (digest, bool) {
	var d digest
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hexPart) != 64 {
		return d, false
	}
	_, err := hex.Decode(d[:], []byte(hexPart))
	return d, err == nil
}

// apiKey is what the token server keeps of one accepted API key hash.
type apiKey struct {
	ref         objectRef
	environment string                // a constant of the API: no copy per key
	scope       unique.Handle[string] // space-separated, as introspection returns it; shared by keys with the same scopes
	expiresAt   time.Time             // zero: never
	notAfter    time.Time             // zero: the current key; else the end of its grace period
}

// objectRef names a resource; shared by all of its hashes.
type objectRef struct {
	Namespace, Name string
	UID             types.UID
}

// oauthClient is what the token server keeps of one OAuthClient.
type oauthClient struct {
	ref               objectRef
	clientID          string
	secrets           []clientSecret
	scopes            []string
	audiences         []string
	ttl               time.Duration
	basic, post       bool
	clientCredentials bool
	revoked           bool
	expiresAt         time.Time
}

type clientSecret struct {
	hash     digest
	notAfter time.Time
}

// active reports whether the client may authenticate or have its tokens accepted at now.
func (c *oauthClient) active(now time.Time) bool {
	return !c.revoked && (c.expiresAt.IsZero() || now.Before(c.expiresAt))
}

// secretMatches compares a presented secret's hash with every accepted one in constant time.
func (c *oauthClient) secretMatches(presented digest, now time.Time) bool {
	match := 0
	for _, s := range c.secrets {
		if subtle.ConstantTimeCompare(presented[:], s.hash[:]) == 1 && (s.notAfter.IsZero() || now.Before(s.notAfter)) {
			match = 1
		}
	}
	return match == 1
}

// Index holds the reconciled state the token server answers from: every lookup is
// one map access. Reflectors write watch events straight into it (feed.go).
type Index struct {
	mu          sync.RWMutex
	apiKeys     map[digest]*apiKey
	keyHashes   map[types.UID][]digest // to drop an APIKey's hashes on update or delete
	clients     map[string][]*oauthClient
	clientByUID map[types.UID]*oauthClient
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		apiKeys:     map[digest]*apiKey{},
		keyHashes:   map[types.UID][]digest{},
		clients:     map[string][]*oauthClient{},
		clientByUID: map[types.UID]*oauthClient{},
	}
}

// LookupAPIKey returns the API key with this hash, whether or not it is still valid.
func (x *Index) LookupAPIKey(d digest) (*apiKey, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	k, ok := x.apiKeys[d]
	return k, ok
}

// LookupClient returns the client with this client_id. A client_id held by more than
// one OAuthClient is an error, never a choice: it returns duplicate=true and no client.
func (x *Index) LookupClient(clientID string) (c *oauthClient, duplicate bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	found := x.clients[clientID]
	if len(found) > 1 {
		return nil, true
	}
	if len(found) == 1 {
		return found[0], false
	}
	return nil, false
}

// ClientByUID returns the OAuthClient with this UID, for checks on issued tokens.
func (x *Index) ClientByUID(uid types.UID) (*oauthClient, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	c, ok := x.clientByUID[uid]
	return c, ok
}

// Sizes returns how many API key hashes and clients the index holds.
func (x *Index) Sizes() (apiKeyHashes, clients int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.apiKeys), len(x.clientByUID)
}

// upsertAPIKey replaces everything known of one APIKey. A revoked key is dropped
// at once, from the spec change itself, before the manager has even reconciled it.
func (x *Index) upsertAPIKey(k *latchkeyv1.APIKey) {
	ref := objectRef{Namespace: k.Namespace, Name: k.Name, UID: k.UID}
	var entries []*apiKey
	var hashes []digest
	if !k.Spec.Revoked {
		var expiresAt time.Time
		if k.Spec.ExpiresAt != nil {
			expiresAt = k.Spec.ExpiresAt.Time
		}
		env := string(latchkeyv1.EnvironmentLive)
		if k.Spec.Environment == latchkeyv1.EnvironmentTest {
			env = string(latchkeyv1.EnvironmentTest)
		}
		scope := unique.Make(strings.Join(k.Spec.Scopes, " "))
		for _, c := range k.Status.Credentials {
			d, ok := parseHash(c.Hash)
			if !ok {
				continue
			}
			entry := &apiKey{ref: ref, environment: env, scope: scope, expiresAt: expiresAt}
			if c.NotAfter != nil {
				entry.notAfter = c.NotAfter.Time
			}
			entries = append(entries, entry)
			hashes = append(hashes, d)
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropAPIKeyLocked(k.UID)
	for i, d := range hashes {
		x.apiKeys[d] = entries[i]
	}
	if len(hashes) > 0 {
		x.keyHashes[k.UID] = hashes
	}
}

func (x *Index) deleteAPIKey(uid types.UID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropAPIKeyLocked(uid)
}

func (x *Index) dropAPIKeyLocked(uid types.UID) {
	for _, d := range x.keyHashes[uid] {
		if k, ok := x.apiKeys[d]; ok && k.ref.UID == uid {
			delete(x.apiKeys, d)
		}
	}
	delete(x.keyHashes, uid)
}

// upsertClient replaces everything known of one OAuthClient.
func (x *Index) upsertClient(o *latchkeyv1.OAuthClient) {
	c := &oauthClient{
		ref:       objectRef{Namespace: o.Namespace, Name: o.Name, UID: o.UID},
		clientID:  o.Status.ClientID,
		scopes:    o.Spec.Scopes,
		audiences: o.Spec.Audiences,
		ttl:       time.Hour,
		revoked:   o.Spec.Revoked,
	}
	if o.Spec.AccessTokenTTL != nil {
		c.ttl = o.Spec.AccessTokenTTL.Duration
	}
	if o.Spec.ExpiresAt != nil {
		c.expiresAt = o.Spec.ExpiresAt.Time
	}
	for _, m := range o.Spec.TokenEndpointAuthMethods {
		c.basic = c.basic || m == latchkeyv1.AuthClientSecretBasic
		c.post = c.post || m == latchkeyv1.AuthClientSecretPost
	}
	if len(o.Spec.TokenEndpointAuthMethods) == 0 { // the schema's default
		c.basic, c.post = true, true
	}
	for _, g := range o.Spec.GrantTypes {
		c.clientCredentials = c.clientCredentials || g == latchkeyv1.GrantClientCredentials
	}
	if len(o.Spec.GrantTypes) == 0 {
		c.clientCredentials = true
	}
	if !c.revoked {
		for _, s := range o.Status.Credentials {
			if d, ok := parseHash(s.Hash); ok {
				secret := clientSecret{hash: d}
				if s.NotAfter != nil {
					secret.notAfter = s.NotAfter.Time
				}
				c.secrets = append(c.secrets, secret)
			}
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropClientLocked(o.UID)
	x.clientByUID[o.UID] = c
	if c.clientID != "" {
		x.clients[c.clientID] = append(x.clients[c.clientID], c)
	}
}

func (x *Index) deleteClient(uid types.UID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropClientLocked(uid)
}

func (x *Index) dropClientLocked(uid types.UID) {
	old, ok := x.clientByUID[uid]
	if !ok {
		return
	}
	delete(x.clientByUID, uid)
	kept := x.clients[old.clientID][:0]
	for _, c := range x.clients[old.clientID] {
		if c.ref.UID != uid {
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 {
		delete(x.clients, old.clientID)
	} else {
		x.clients[old.clientID] = kept
	}
}

// replaceAPIKeys makes the APIKeys of namespace ("" for all) exactly list: what a
// relist says. Keys that are gone from the list are dropped.
func (x *Index) replaceAPIKeys(namespace string, list []*latchkeyv1.APIKey) {
	listed := make(map[types.UID]bool, len(list))
	for _, k := range list {
		listed[k.UID] = true
	}
	x.mu.Lock()
	for uid, hashes := range x.keyHashes {
		if k, ok := x.apiKeys[hashes[0]]; ok && !listed[uid] && (namespace == "" || k.ref.Namespace == namespace) {
			x.dropAPIKeyLocked(uid)
		}
	}
	x.mu.Unlock()
	for _, k := range list {
		x.upsertAPIKey(k)
	}
}

// replaceClients is replaceAPIKeys for OAuthClients.
func (x *Index) replaceClients(namespace string, list []*latchkeyv1.OAuthClient) {
	listed := make(map[types.UID]bool, len(list))
	for _, c := range list {
		listed[c.UID] = true
	}
	x.mu.Lock()
	for uid, c := range x.clientByUID {
		if !listed[uid] && (namespace == "" || c.ref.Namespace == namespace) {
			x.dropClientLocked(uid)
		}
	}
	x.mu.Unlock()
	for _, c := range list {
		x.upsertClient(c)
	}
}

func upsertTyped[T any](obj any, upsert func(T)) {
	if typed, ok := obj.(T); ok {
		upsert(typed)
	}
}

// deleteTyped drops a deleted object. A Reflector hands over the object itself
// (informers' DeletedFinalStateUnknown tombstones do not occur: a relist goes
// through Replace).
func deleteTyped[T interface{ GetUID() types.UID }](obj any, drop func(types.UID)) {
	if typed, ok := obj.(T); ok {
		drop(typed.GetUID())
	}
}
