package index

import (
	"crypto/subtle"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/apirules"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// Digest is a raw SHA-256: 32 bytes as a map key instead of 71 characters of "sha256:<hex>".
type Digest [32]byte

// DigestOf is the SHA-256 of a presented credential (credential.Sum: no copy).
func DigestOf(s string) Digest { return Digest(credential.Sum(s)) }

// ParseHash turns "sha256:<hex>" into a digest.
func ParseHash(s string) (Digest, bool) {
	d, ok := credential.DigestOfHash(s)
	return Digest(d), ok
}

// Key is what the token server keeps of one accepted API key hash.
type Key struct {
	Ref Ref
	// Subject is apikey:<namespace>/<name> (APIKeySubjectPrefix), made once per
	// APIKey and shared by its hashes, Ref's namespace and name being parts of
	// it: introspection's sub and the authorizer's identity header, without a
	// concatenation per request (make bench-micro: an allocation fewer per check).
	Subject     string
	Environment string                // a constant of the API: no copy per key
	Scope       unique.Handle[string] // space-separated, as introspection returns it; shared by keys with the same scopes
	ExpiresAt   time.Time             // zero: never
	NotAfter    time.Time             // zero: the current key; else the end of its grace period
	// Reported: status.leaks holds a report of this key (the token server writes
	// one report per key, never one per scanner report).
	Reported bool
	// RateLimit is the APIKey's own spec.rateLimit: a cap on whatever its APIs allow
	// (apirules.CredentialLimit); nil: none. Shared by the object's hashes.
	RateLimit *apirules.Limit
	// UseNoted is the last use noted for status.lastUsedAt (lastused.Tracker.Used).
	UseNoted atomic.Uint64
}

// Ref names a resource; shared by all of its hashes.
type Ref struct {
	Namespace, Name string
	UID             types.UID
}

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// APIKeySubjectPrefix begins an API key's subject wherever one is told (the
// introspection answer's sub, the authorizer's identity): apikey:<namespace>/<name>.
const APIKeySubjectPrefix = "apikey:"

// Kinds of credential, as the API server's resources name them.
const (
	KindAPIKey      = "apikeys"
	KindOAuthClient = "oauthclients"
)

// Client is what the token server keeps of one OAuthClient.
type Client struct {
	Ref               Ref
	ClientID          string
	secrets           []clientSecret
	Scopes            []string
	Audiences         []string
	TTL               time.Duration
	Basic, Post       bool
	ClientCredentials bool
	// The third-party app side (authorization_code): how users see it and where
	// codes may go.
	DisplayName                     string
	RedirectURIs                    []string
	AuthorizationCode, RefreshToken bool
	// Public clients have no secret (token endpoint auth method none).
	Public       bool
	PKCERequired bool
	Revoked      bool
	ExpiresAt    time.Time
	LastUsedAt   time.Time     // status.lastUsedAt; zero when never used
	UseNoted     atomic.Uint64 // the last use noted for it (lastused.Tracker.Used)
	// Introspection is nil for a client that may not introspect.
	Introspection *IntrospectionPolicy
	// RateLimit is the client's own spec.rateLimit, a cap on its own tokens' budget
	// on each API (apirules.CredentialLimit); nil: none.
	RateLimit *apirules.Limit
}

// IntrospectionPolicy is an OAuthClient's spec.introspection: what a resource
// server may learn about (introspect.go).
type IntrospectionPolicy struct {
	Audiences     []string
	Scopes        []string
	Namespaces    []string // never empty: the client's own namespace by default
	AllNamespaces bool
}

type clientSecret struct {
	hash     Digest
	notAfter time.Time
	reported bool // status.leaks holds a report of it
}

// Active reports whether the client may authenticate or have its tokens accepted at now.
func (c *Client) Active(now time.Time) bool {
	return !c.Revoked && (c.ExpiresAt.IsZero() || now.Before(c.ExpiresAt))
}

// SecretMatches compares a presented secret's hash with every accepted one in constant time.
func (c *Client) SecretMatches(presented Digest, now time.Time) bool {
	match := 0
	for _, s := range c.secrets {
		if subtle.ConstantTimeCompare(presented[:], s.hash[:]) == 1 && (s.notAfter.IsZero() || now.Before(s.notAfter)) {
			match = 1
		}
	}
	return match == 1
}

// SecretReported is SecretMatches, and whether status.leaks already holds a
// report of the matching secret.
func (c *Client) SecretReported(presented Digest, now time.Time) (matches, reported bool) {
	match, rep := 0, 0
	for _, s := range c.secrets {
		if subtle.ConstantTimeCompare(presented[:], s.hash[:]) == 1 && (s.notAfter.IsZero() || now.Before(s.notAfter)) {
			match = 1
			if s.reported {
				rep = 1
			}
		}
	}
	return match == 1, rep == 1
}

// reportedHashes are the hashes status.leaks reports.
func reportedHashes(leaks []latchkeyv1.LeakRecord) []Digest {
	var out []Digest
	for _, l := range leaks {
		if d, ok := ParseHash(l.Hash); ok {
			out = append(out, d)
		}
	}
	return out
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
	apiKeys     map[Digest]*Key
	keyHashes   map[types.UID][]Digest // to drop an APIKey's hashes on update or delete
	contested   map[Digest][]*Key      // hashes accepted by more than one APIKey: answered for by none
	clients     map[string][]*Client
	clientByUID map[types.UID]*Client
	// keyLastUsed is each APIKey's status.lastUsedAt (Unix seconds), for the
	// last-use write budget (usage.go); absent when never used.
	keyLastUsed map[types.UID]int64
	apis        apiSet
	grants      map[types.UID]*Grant
	// grantsByName finds a grant by "namespace/name": one app's grant in one
	// workspace, which refresh tokens and the consent page look up.
	grantsByName map[string]*Grant
	// grantsSeenAt is how far each OAuthGrant watch has delivered, by the
	// namespace it watches ("" for all): the resourceVersion of its last list or
	// event, recorded after the event itself (GrantsSeenAt).
	grantsSeenAt map[string]string
	// log receives one line per duplicate when it appears (never a credential).
	log logr.Logger
}

// NewIndex returns an empty index that reports duplicates to log.
func NewIndex(log logr.Logger) *Index {
	return &Index{
		apiKeys:      map[Digest]*Key{},
		keyHashes:    map[types.UID][]Digest{},
		contested:    map[Digest][]*Key{},
		clients:      map[string][]*Client{},
		clientByUID:  map[types.UID]*Client{},
		keyLastUsed:  map[types.UID]int64{},
		apis:         apiSet{all: map[types.UID]*API{}, served: map[string]*API{}, byHost: map[string]*API{}},
		grants:       map[types.UID]*Grant{},
		grantsByName: map[string]*Grant{},
		grantsSeenAt: map[string]string{},
		log:          log,
	}
}

// LookupAPIKey returns the API key with this hash, whether or not it is still valid.
func (x *Index) LookupAPIKey(d Digest) (*Key, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	k, ok := x.apiKeys[d]
	return k, ok
}

// LookupClient returns the client that may authenticate with this client_id. A
// client_id held by more than one OAuthClient is an error, never a choice: no client.
func (x *Index) LookupClient(clientID string) (*Client, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	found := x.clients[clientID]
	if len(found) != 1 {
		return nil, false
	}
	return found[0], true
}

// ClientByUID returns the OAuthClient with this UID, for checks on issued tokens.
func (x *Index) ClientByUID(uid types.UID) (*Client, bool) {
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
	if kind == KindOAuthClient {
		if c, ok := x.clientByUID[uid]; ok {
			return c.LastUsedAt
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

// UpsertAPIKey replaces everything known of one APIKey. A revoked key is dropped
// at once, from the spec change itself, before the manager has even reconciled it.
func (x *Index) UpsertAPIKey(k *latchkeyv1.APIKey) {
	// The ref's namespace and name are parts of the subject: one allocation holds
	// the three strings, and the object's own copies are left to the collector.
	subject := APIKeySubjectPrefix + k.Namespace + "/" + k.Name
	nsEnd := len(APIKeySubjectPrefix) + len(k.Namespace)
	ref := Ref{Namespace: subject[len(APIKeySubjectPrefix):nsEnd], Name: subject[nsEnd+1:], UID: k.UID}
	var entries []*Key
	var hashes []Digest
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
		limit := apirules.LimitOf(k.Spec.RateLimit)
		reported := reportedHashes(k.Status.Leaks)
		for _, c := range k.Status.Credentials {
			d, ok := ParseHash(c.Hash)
			if !ok || slices.Contains(hashes, d) {
				continue
			}
			entry := &Key{Ref: ref, Subject: subject, Environment: env, Scope: scope, ExpiresAt: expiresAt, Reported: slices.Contains(reported, d), RateLimit: limit}
			if c.NotAfter != nil {
				entry.NotAfter = c.NotAfter.Time
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
				"keyID", credential.KeyID(credential.HashOfDigest(d[:])), "holders", []string{holders[0].Ref.String(), holders[1].Ref.String()})
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
func (x *Index) addHashLocked(d Digest, entry *Key) []*Key {
	if holders, ok := x.contested[d]; ok {
		x.contested[d] = append(holders, entry)
		return x.contested[d]
	}
	existing, ok := x.apiKeys[d]
	if !ok || existing.Ref.UID == entry.Ref.UID {
		x.apiKeys[d] = entry
		return nil
	}
	delete(x.apiKeys, d)
	x.contested[d] = []*Key{existing, entry}
	return x.contested[d]
}

func (x *Index) DeleteAPIKey(uid types.UID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropAPIKeyLocked(uid)
}

func (x *Index) dropAPIKeyLocked(uid types.UID) {
	for _, d := range x.keyHashes[uid] {
		if holders, ok := x.contested[d]; ok {
			kept := slices.DeleteFunc(holders, func(k *Key) bool { return k.Ref.UID == uid })
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
		if k, ok := x.apiKeys[d]; ok && k.Ref.UID == uid {
			delete(x.apiKeys, d)
		}
	}
	delete(x.keyHashes, uid)
	delete(x.keyLastUsed, uid)
}

// UpsertClient replaces everything known of one OAuthClient.
func (x *Index) UpsertClient(o *latchkeyv1.OAuthClient) {
	c := &Client{
		Ref:       Ref{Namespace: o.Namespace, Name: o.Name, UID: o.UID},
		ClientID:  o.Status.ClientID,
		Scopes:    o.Spec.Scopes,
		Audiences: o.Spec.Audiences,
		TTL:       time.Hour,
		Revoked:   o.Spec.Revoked,
		RateLimit: apirules.LimitOf(o.Spec.RateLimit),
	}
	if o.Spec.AccessTokenTTL != nil {
		c.TTL = o.Spec.AccessTokenTTL.Duration
	}
	if o.Spec.ExpiresAt != nil {
		c.ExpiresAt = o.Spec.ExpiresAt.Time
	}
	if o.Status.LastUsedAt != nil {
		c.LastUsedAt = o.Status.LastUsedAt.Time
	}
	for _, m := range o.Spec.TokenEndpointAuthMethods {
		c.Basic = c.Basic || m == latchkeyv1.AuthClientSecretBasic
		c.Post = c.Post || m == latchkeyv1.AuthClientSecretPost
	}
	if len(o.Spec.TokenEndpointAuthMethods) == 0 { // the schema's default
		c.Basic, c.Post = true, true
	}
	for _, g := range o.Spec.GrantTypes {
		c.ClientCredentials = c.ClientCredentials || g == latchkeyv1.GrantClientCredentials
		c.AuthorizationCode = c.AuthorizationCode || g == latchkeyv1.GrantAuthorizationCode
		c.RefreshToken = c.RefreshToken || g == latchkeyv1.GrantRefreshToken
	}
	c.DisplayName, c.RedirectURIs = o.Spec.DisplayName, o.Spec.RedirectURIs
	c.Public, c.PKCERequired = o.Public(), o.PKCERequired()
	if c.Public {
		c.Basic, c.Post = false, false
	}
	if len(o.Spec.GrantTypes) == 0 {
		c.ClientCredentials = true
	}
	if p := o.Spec.Introspection; p != nil {
		c.Introspection = &IntrospectionPolicy{Audiences: p.Audiences, Scopes: p.Scopes, Namespaces: p.Namespaces}
		if len(p.Namespaces) == 0 {
			c.Introspection.Namespaces = []string{o.Namespace}
		}
		c.Introspection.AllNamespaces = slices.Contains(p.Namespaces, "*")
	}
	if !c.Revoked {
		reported := reportedHashes(o.Status.Leaks)
		for _, s := range o.Status.Credentials {
			if d, ok := ParseHash(s.Hash); ok {
				secret := clientSecret{hash: d, reported: slices.Contains(reported, d)}
				if s.NotAfter != nil {
					secret.notAfter = s.NotAfter.Time
				}
				c.secrets = append(c.secrets, secret)
			}
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	known := len(x.clients[c.ClientID]) > 1 // a duplicate before this update is not new
	x.dropClientLocked(o.UID)
	x.clientByUID[o.UID] = c
	// Only a client with a secret can authenticate, so only such a client claims its
	// client_id: when the manager refuses a duplicate (withdrawing its secret), the
	// holder by right answers again. A public client has no secret to withdraw; the
	// manager derives its client_id from its UID, so a duplicate can only come from
	// a status restored elsewhere, and then neither answers.
	if c.ClientID == "" || (len(c.secrets) == 0 && !c.Public) {
		return
	}
	holders := append(x.clients[c.ClientID], c)
	x.clients[c.ClientID] = holders
	if len(holders) == 2 && !known {
		x.log.Error(nil, "a client_id is held by more than one OAuthClient; refusing it until one is left",
			"clientID", c.ClientID, "holders", []string{holders[0].Ref.String(), holders[1].Ref.String()})
	}
}

func (x *Index) DeleteClient(uid types.UID) {
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
	kept := x.clients[old.ClientID][:0]
	for _, c := range x.clients[old.ClientID] {
		if c.Ref.UID != uid {
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 {
		delete(x.clients, old.ClientID)
	} else {
		x.clients[old.ClientID] = kept
	}
}

// ReplaceAPIKeys makes the APIKeys of namespace ("" for all) exactly list: what a
// relist says. Keys that are gone from the list are dropped.
func (x *Index) ReplaceAPIKeys(namespace string, list []*latchkeyv1.APIKey) {
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
		x.UpsertAPIKey(k)
	}
}

// apiKeyRefLocked names the APIKey uid through one of its hashes, contested or not.
func (x *Index) apiKeyRefLocked(uid types.UID, d Digest) (Ref, bool) {
	if k, ok := x.apiKeys[d]; ok && k.Ref.UID == uid {
		return k.Ref, true
	}
	for _, k := range x.contested[d] {
		if k.Ref.UID == uid {
			return k.Ref, true
		}
	}
	return Ref{}, false
}

// ReplaceClients is replaceAPIKeys for OAuthClients.
func (x *Index) ReplaceClients(namespace string, list []*latchkeyv1.OAuthClient) {
	listed := make(map[types.UID]bool, len(list))
	for _, c := range list {
		listed[c.UID] = true
	}
	x.mu.Lock()
	for uid, c := range x.clientByUID {
		if !listed[uid] && (namespace == "" || c.Ref.Namespace == namespace) {
			x.dropClientLocked(uid)
		}
	}
	x.mu.Unlock()
	for _, c := range list {
		x.UpsertClient(c)
	}
}
