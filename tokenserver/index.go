package tokenserver

import (
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
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

func (r objectRef) String() string { return r.Namespace + "/" + r.Name }

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
	lastUsedAt        time.Time // status.lastUsedAt; zero when never used
	// introspection is nil for a client that may not introspect.
	introspection *introspectionPolicy
}

// introspectionPolicy is an OAuthClient's spec.introspection: what a resource
// server may learn about (introspect.go).
type introspectionPolicy struct {
	audiences     []string
	scopes        []string
	namespaces    []string // never empty: the client's own namespace by default
	allNamespaces bool
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
//
// A hash or a client_id claimed by more than one object is never answered for,
// whichever claimed it first: the index holds it aside (contested, and clients
// with more than one holder) until one claim is left, and reports it once, when it
// appears. The manager cannot produce either (issuance proofs, derived client_ids);
// this holds even if something else writes status.
type Index struct {
	mu          sync.RWMutex
	apiKeys     map[digest]*apiKey
	keyHashes   map[types.UID][]digest // to drop an APIKey's hashes on update or delete
	contested   map[digest][]*apiKey   // hashes accepted by more than one APIKey: answered for by none
	clients     map[string][]*oauthClient
	clientByUID map[types.UID]*oauthClient
	// keyLastUsed is each APIKey's status.lastUsedAt (Unix seconds), for the
	// last-use write budget (usage.go); absent when never used.
	keyLastUsed map[types.UID]int64
	// log receives one line per duplicate when it appears (never a credential).
	log logr.Logger
}

// NewIndex returns an empty index that reports duplicates to log.
func NewIndex(log logr.Logger) *Index {
	return &Index{
		apiKeys:     map[digest]*apiKey{},
		keyHashes:   map[types.UID][]digest{},
		contested:   map[digest][]*apiKey{},
		clients:     map[string][]*oauthClient{},
		clientByUID: map[types.UID]*oauthClient{},
		keyLastUsed: map[types.UID]int64{},
		log:         log,
	}
}

// LookupAPIKey returns the API key with this hash, whether or not it is still valid.
func (x *Index) LookupAPIKey(d digest) (*apiKey, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	k, ok := x.apiKeys[d]
	return k, ok
}

// LookupClient returns the client that may authenticate with this client_id. A
// client_id held by more than one OAuthClient is an error, never a choice: no client.
func (x *Index) LookupClient(clientID string) (*oauthClient, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	found := x.clients[clientID]
	if len(found) != 1 {
		return nil, false
	}
	return found[0], true
}

// ClientByUID returns the OAuthClient with this UID, for checks on issued tokens.
func (x *Index) ClientByUID(uid types.UID) (*oauthClient, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	c, ok := x.clientByUID[uid]
	return c, ok
}

// LastUsed returns the status.lastUsedAt of the object of kind with uid as the
// watch cache holds it: zero when never used or unknown.
func (x *Index) LastUsed(kind string, uid types.UID) time.Time {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if kind == kindOAuthClient {
		if c, ok := x.clientByUID[uid]; ok {
			return c.lastUsedAt
		}
		return time.Time{}
	}
	if at, ok := x.keyLastUsed[uid]; ok {
		return time.Unix(at, 0)
	}
	return time.Time{}
}

// Sizes returns how many API key hashes and clients the index holds.
func (x *Index) Sizes() (apiKeyHashes, clients int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.apiKeys), len(x.clientByUID)
}

// Duplicates returns how many API key hashes and client_ids more than one object claims.
func (x *Index) Duplicates() (apiKeyHashes, clientIDs int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, holders := range x.clients {
		if len(holders) > 1 {
			clientIDs++
		}
	}
	return len(x.contested), clientIDs
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
			if !ok || slices.Contains(hashes, d) {
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
	// An update drops and re-adds the object's hashes; a duplicate that was already
	// there before it is not new, and is not reported again.
	known := make([]bool, len(hashes))
	for i, d := range hashes {
		_, known[i] = x.contested[d]
	}
	x.dropAPIKeyLocked(k.UID)
	for i, d := range hashes {
		if holders := x.addHashLocked(d, entries[i]); len(holders) == 2 && !known[i] {
			x.log.Error(nil, "an API key hash is accepted by more than one APIKey; answering for neither until one is left",
				"keyID", credential.KeyID(credential.HashOfDigest(d[:])), "holders", []string{holders[0].ref.String(), holders[1].ref.String()})
		}
	}
	if len(hashes) > 0 {
		x.keyHashes[k.UID] = hashes
	}
	if k.Status.LastUsedAt != nil && len(hashes) > 0 {
		x.keyLastUsed[k.UID] = k.Status.LastUsedAt.Unix()
	}
}

// addHashLocked records that entry's APIKey accepts d. A second APIKey accepting the
// same hash makes it contested: answered for by neither. It returns the holders of a
// contested hash.
func (x *Index) addHashLocked(d digest, entry *apiKey) []*apiKey {
	if holders, ok := x.contested[d]; ok {
		x.contested[d] = append(holders, entry)
		return x.contested[d]
	}
	existing, ok := x.apiKeys[d]
	if !ok || existing.ref.UID == entry.ref.UID {
		x.apiKeys[d] = entry
		return nil
	}
	delete(x.apiKeys, d)
	x.contested[d] = []*apiKey{existing, entry}
	return x.contested[d]
}

func (x *Index) deleteAPIKey(uid types.UID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropAPIKeyLocked(uid)
}

func (x *Index) dropAPIKeyLocked(uid types.UID) {
	for _, d := range x.keyHashes[uid] {
		if holders, ok := x.contested[d]; ok {
			kept := slices.DeleteFunc(holders, func(k *apiKey) bool { return k.ref.UID == uid })
			switch len(kept) {
			case 0:
				delete(x.contested, d)
			case 1:
				x.apiKeys[d] = kept[0]
				delete(x.contested, d)
			default:
				x.contested[d] = kept
			}
			continue
		}
		if k, ok := x.apiKeys[d]; ok && k.ref.UID == uid {
			delete(x.apiKeys, d)
		}
	}
	delete(x.keyHashes, uid)
	delete(x.keyLastUsed, uid)
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
	if o.Status.LastUsedAt != nil {
		c.lastUsedAt = o.Status.LastUsedAt.Time
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
	if p := o.Spec.Introspection; p != nil {
		c.introspection = &introspectionPolicy{audiences: p.Audiences, scopes: p.Scopes, namespaces: p.Namespaces}
		if len(p.Namespaces) == 0 {
			c.introspection.namespaces = []string{o.Namespace}
		}
		c.introspection.allNamespaces = slices.Contains(p.Namespaces, "*")
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
	known := len(x.clients[c.clientID]) > 1 // a duplicate before this update is not new
	x.dropClientLocked(o.UID)
	x.clientByUID[o.UID] = c
	// Only a client with a secret can authenticate, so only such a client claims its
	// client_id: when the manager refuses a duplicate (withdrawing its secret), the
	// holder by right answers again.
	if c.clientID == "" || len(c.secrets) == 0 {
		return
	}
	holders := append(x.clients[c.clientID], c)
	x.clients[c.clientID] = holders
	if len(holders) == 2 && !known {
		x.log.Error(nil, "a client_id is held by more than one OAuthClient; refusing it until one is left",
			"clientID", c.clientID, "holders", []string{holders[0].ref.String(), holders[1].ref.String()})
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
		if listed[uid] {
			continue
		}
		if ref, ok := x.apiKeyRefLocked(uid, hashes[0]); ok && (namespace == "" || ref.Namespace == namespace) {
			x.dropAPIKeyLocked(uid)
		}
	}
	x.mu.Unlock()
	for _, k := range list {
		x.upsertAPIKey(k)
	}
}

// apiKeyRefLocked names the APIKey uid through one of its hashes, contested or not.
func (x *Index) apiKeyRefLocked(uid types.UID, d digest) (objectRef, bool) {
	if k, ok := x.apiKeys[d]; ok && k.ref.UID == uid {
		return k.ref, true
	}
	for _, k := range x.contested[d] {
		if k.ref.UID == uid {
			return k.ref, true
		}
	}
	return objectRef{}, false
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
