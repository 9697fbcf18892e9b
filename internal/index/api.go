package index

import (
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/apirules"
	"github.com/latchkey-dev/latchkey/internal/ascii"
)

// API is an API resource as the authorizer applies it: rules sorted most specific
// first, so that the first match is the one that wins.
type API struct {
	Ref Ref
	// ID is "namespace/name", kept to name the API in metrics and headers.
	ID         string
	Identifier string
	Hosts      []string
	// AcceptsLive and AcceptsTest say which API-key environments are accepted.
	AcceptsLive, AcceptsTest bool
	// Namespaces whose credentials are accepted; AllNamespaces for "*".
	Namespaces    []string
	AllNamespaces bool
	// Authenticate is the default action for unmatched routes: any valid credential
	// (true) or deny (false).
	Authenticate bool
	Rules        []Rule
	// Catalogue maps each scope the API defines to its description.
	Catalogue map[string]string
	// RateLimit is the default budget of each credential (nil: none); overrides
	// replace it for the credentials the API's owner names (LimitFor).
	RateLimit *apirules.Limit
	overrides map[Credential]*apirules.Limit
	// claim is what apirules.NotNewer compares.
	claim *latchkeyv1.API
}

// Rule is one route rule of an API.
type Rule struct {
	Methods    []string // empty: every method
	PathPrefix string
	Scopes     []string // all required; empty: any valid credential
	// RateLimit is the rule's own budget per credential (nil: none); ID names its
	// budget: a hash of the methods and the prefix, so that a rule keeps its
	// budget when others are added or reordered.
	RateLimit *apirules.Limit
	ID        int32
}

// Credential names a credential as a rate limit override does: Kind is
// latchkeyv1.KindAPIKey, KindOAuthClient or KindOAuthGrant.
type Credential struct {
	Kind            latchkeyv1.CredentialKindName
	Namespace, Name string
}

// ruleID is a rule's budget name: FNV-1a of its methods and prefix, never
// negative (ratelimit.APIBudget is).
func ruleID(r latchkeyv1.APIRule) int32 {
	h := fnv.New32a()
	for _, m := range r.Methods {
		_, _ = h.Write([]byte(m))
		_, _ = h.Write([]byte{0})
	}
	_, _ = h.Write([]byte(r.PathPrefix))
	return int32(h.Sum32() & 0x7fffffff)
}

// LimitFor is the API's budget for credential before the credential's own cap:
// its owner's override, or the default (nil: none).
func (a *API) LimitFor(c Credential) *apirules.Limit {
	if l, ok := a.overrides[c]; ok {
		return l
	}
	return a.RateLimit
}

// newAPI compiles an API resource.
func newAPI(o *latchkeyv1.API) *API {
	a := &API{
		Ref:        Ref{Namespace: o.Namespace, Name: o.Name, UID: o.UID},
		ID:         o.Namespace + "/" + o.Name,
		Identifier: o.Spec.Identifier,
		Hosts:      o.Spec.Hosts,
		Namespaces: o.Spec.Namespaces,
		Catalogue:  make(map[string]string, len(o.Spec.Scopes)),
		// Only the fields apirules.NotNewer reads.
		claim: &latchkeyv1.API{ObjectMeta: *o.ObjectMeta.DeepCopy()},
	}
	a.claim.ManagedFields, a.claim.Annotations, a.claim.Labels = nil, nil, nil
	if len(a.Namespaces) == 0 {
		a.Namespaces = []string{o.Namespace}
	}
	a.AllNamespaces = slices.Contains(a.Namespaces, "*")
	a.Authenticate = o.Spec.DefaultAction == latchkeyv1.DefaultActionAuthenticate
	for _, e := range o.Spec.Environments {
		a.AcceptsLive = a.AcceptsLive || e == latchkeyv1.EnvironmentLive
		a.AcceptsTest = a.AcceptsTest || e == latchkeyv1.EnvironmentTest
	}
	if len(o.Spec.Environments) == 0 { // the schema's default
		a.AcceptsLive, a.AcceptsTest = true, true
	}
	for _, s := range o.Spec.Scopes {
		a.Catalogue[s.Name] = s.Description
	}
	for _, r := range o.Spec.Rules {
		a.Rules = append(a.Rules, Rule{Methods: r.Methods, PathPrefix: r.PathPrefix, Scopes: r.Scopes,
			RateLimit: apirules.LimitOf(r.RateLimit), ID: ruleID(r)})
	}
	if rl := o.Spec.RateLimit; rl != nil {
		a.RateLimit = apirules.LimitOf(&rl.RateLimit)
		for _, over := range rl.Overrides {
			if a.overrides == nil {
				a.overrides = make(map[Credential]*apirules.Limit, len(rl.Overrides))
			}
			a.overrides[Credential{Kind: over.Kind, Namespace: over.Namespace, Name: over.Name}] = apirules.LimitOf(&over.RateLimit)
		}
	}
	// Most specific first: the longest prefix; at equal length a rule that names
	// methods before one for every method. Stable, so that the order written in
	// the spec breaks the remaining ties.
	sort.SliceStable(a.Rules, func(i, j int) bool {
		ri, rj := a.Rules[i], a.Rules[j]
		if len(ri.PathPrefix) != len(rj.PathPrefix) {
			return len(ri.PathPrefix) > len(rj.PathPrefix)
		}
		return len(ri.Methods) > 0 && len(rj.Methods) == 0
	})
	return a
}

// Match returns the most specific rule for a request, or false when none matches
// (the default action applies). path must already be clean (see the authorizer).
// Methods compare case-insensitively in ASCII only (no Unicode case mapping
// turns a method the upstream sees, such as "po\u017Ft", into one a rule names,
// POST), and a HEAD is matched as a GET too: servers answer HEAD with their GET
// handler, so a HEAD must need what a GET needs.
func (a *API) Match(method, path string) (*Rule, bool) {
	method = ascii.ToUpper(method)
	for i := range a.Rules {
		r := &a.Rules[i]
		if ruleMethod(r.Methods, method) && pathHasPrefix(path, r.PathPrefix) {
			return r, true
		}
	}
	return nil, false
}

func ruleMethod(methods []string, method string) bool {
	return len(methods) == 0 || slices.Contains(methods, method) ||
		(method == "HEAD" && slices.Contains(methods, "GET"))
}

// pathHasPrefix matches on segment boundaries: /v1/leads covers /v1/leads and
// /v1/leads/42, not /v1/leadsx.
func pathHasPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// AcceptsNamespace reports whether the API accepts credentials of namespace.
func (a *API) AcceptsNamespace(namespace string) bool {
	return a.AllNamespaces || slices.Contains(a.Namespaces, namespace)
}

// AcceptsEnvironment reports whether the API accepts API keys of env.
func (a *API) AcceptsEnvironment(env string) bool {
	return (env == string(latchkeyv1.EnvironmentLive) && a.AcceptsLive) ||
		(env == string(latchkeyv1.EnvironmentTest) && a.AcceptsTest)
}

// apiSet is every API the index knows and which of them are served: an API is
// served only while it holds its identifier and every one of its hosts, that is
// while no other API claiming one of them is apirules.NotNewer than it: exactly what
// the manager reports in its Ready condition.
type apiSet struct {
	all     map[types.UID]*API
	served  map[string]*API // "namespace/name"
	byHost  map[string]*API
	version uint64 // counts changes, for caches of what is derived from the APIs
}

func (s *apiSet) recompute() {
	s.version++
	claimants := map[string][]*API{} // "id:" + identifier, "host:" + host
	for _, a := range s.all {
		claimants["id:"+a.Identifier] = append(claimants["id:"+a.Identifier], a)
		for _, host := range a.Hosts {
			claimants["host:"+host] = append(claimants["host:"+host], a)
		}
	}
	// In each group, only a strictly oldest claimant holds the claim: everyone else
	// gives way (apirules.NotNewer), ties included. One pass per group.
	givesWay := map[*API]bool{}
	for _, group := range claimants {
		if len(group) == 1 {
			continue
		}
		oldest, tied := group[0], false
		for _, a := range group[1:] {
			switch {
			case !apirules.NotNewer(oldest.claim, a.claim): // a is strictly older
				oldest, tied = a, false
			case apirules.NotNewer(a.claim, oldest.claim): // same second
				tied = true
			}
		}
		for _, a := range group {
			if a != oldest || tied {
				givesWay[a] = true
			}
		}
	}
	s.served, s.byHost = map[string]*API{}, map[string]*API{}
	for _, a := range s.all {
		if givesWay[a] {
			continue
		}
		s.served[a.ID] = a
		for _, host := range a.Hosts {
			s.byHost[host] = a
		}
	}
}

// replace puts a in place of an API whose claims are the same (a change of rules
// or scopes, or a status write): no claim can change hands, so nothing is recomputed.
func (s *apiSet) replace(a *API) bool {
	old, ok := s.all[a.Ref.UID]
	if !ok || old.Identifier != a.Identifier || !slices.Equal(old.Hosts, a.Hosts) ||
		!old.claim.CreationTimestamp.Equal(&a.claim.CreationTimestamp) {
		return false
	}
	s.version++
	s.all[a.Ref.UID] = a
	if s.served[a.ID] == old {
		s.served[a.ID] = a
		for _, host := range a.Hosts {
			s.byHost[host] = a
		}
	}
	return true
}

// API returns the served API namespace/name.
func (x *Index) API(namespace, name string) (*API, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	a, ok := x.apis.served[namespace+"/"+name]
	return a, ok
}

// APIForHost returns the served API for a Host header, matched by host name,
// case-insensitively and without the port (APIs list host names only). Host
// names are ASCII (spec.hosts are DNS names): a Host with any other byte names
// no API, rather than the one Unicode case folding would make of it (the Kelvin
// sign folds to "k"), by which the proxy did not route the request.
func (x *Index) APIForHost(host string) (*API, bool) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= utf8.RuneSelf {
			return nil, false
		}
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".") // ASCII only, as checked
	x.mu.RLock()
	defer x.mu.RUnlock()
	a, ok := x.apis.byHost[host]
	return a, ok
}

// PublicScopeCatalogue returns every scope of the served APIs open to every
// namespace (spec.namespaces "*") with its description (the first API's, by name,
// where two describe the same scope), and a version that changes whenever the APIs
// do. An API that accepts only some namespaces' credentials is of no use to anyone
// else, and its scope names are its tenants' business: they are not published.
func (x *Index) PublicScopeCatalogue() (map[string]string, uint64) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	names := make([]string, 0, len(x.apis.served))
	for name, api := range x.apis.served {
		if api.AllNamespaces {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := map[string]string{}
	for _, name := range names {
		for scope, description := range x.apis.served[name].Catalogue {
			if _, ok := out[scope]; !ok {
				out[scope] = description
			}
		}
	}
	return out, x.apis.version
}

// APIVersion changes whenever the APIs do: what is derived from them is recomputed then.
func (x *Index) APIVersion() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.apis.version
}

// APIs returns how many APIs the index knows and how many it serves.
func (x *Index) APIs() (known, served int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.apis.all), len(x.apis.served)
}

// UpsertAPI replaces everything known of one API.
func (x *Index) UpsertAPI(o *latchkeyv1.API) {
	a := newAPI(o)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.apis.replace(a) {
		return
	}
	x.apis.all[o.UID] = a
	x.apis.recompute()
}

// DeleteAPI drops an API.
func (x *Index) DeleteAPI(uid types.UID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.apis.all, uid)
	x.apis.recompute()
}

// ReplaceAPIs makes the APIs of namespace ("" for all) exactly list.
func (x *Index) ReplaceAPIs(namespace string, list []*latchkeyv1.API) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for uid, a := range x.apis.all {
		if namespace == "" || a.Ref.Namespace == namespace {
			delete(x.apis.all, uid)
		}
	}
	for _, o := range list {
		x.apis.all[o.UID] = newAPI(o)
	}
	x.apis.recompute()
}
