package index

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

func testAPI(ns, name string, created int64, mutate func(*latchkeyv1.APISpec)) *latchkeyv1.API {
	a := &latchkeyv1.API{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "/" + name),
			CreationTimestamp: metav1.NewTime(time.Unix(created, 0))},
		Spec: latchkeyv1.APISpec{
			Identifier: "https://" + name + ".example",
			Scopes:     []latchkeyv1.APIScope{{Name: "leads:read"}, {Name: "leads:write"}},
			Rules: []latchkeyv1.APIRule{
				{PathPrefix: "/v1/leads", Scopes: []string{"leads:read"}},
				{PathPrefix: "/v1/leads", Methods: []string{"POST"}, Scopes: []string{"leads:write"}},
				{PathPrefix: "/v1/leads/export", Scopes: []string{"leads:read", "leads:write"}},
				{PathPrefix: "/", Methods: []string{"GET"}},
			},
		},
	}
	if mutate != nil {
		mutate(&a.Spec)
	}
	return a
}

func TestRuleMatchMostSpecific(t *testing.T) {
	a := newAPI(testAPI("ns", "leads", 1, nil))
	for _, tc := range []struct {
		method, path string
		want         string // the matched rule's scopes, or "none"
	}{
		{"GET", "/v1/leads", "[leads:read]"},
		{"GET", "/v1/leads/42", "[leads:read]"},
		{"POST", "/v1/leads", "[leads:write]"},
		{"POST", "/v1/leads/42/notes", "[leads:write]"},
		{"GET", "/v1/leads/export", "[leads:read leads:write]"},
		{"GET", "/v1/leadsx", "[]"},    // not the /v1/leads rule: segment boundary; the / rule
		{"POST", "/v1/leadsx", "none"}, // the / rule is GET only
		{"DELETE", "/v1/leads", "[leads:read]"},
		{"GET", "/", "[]"},
		{"post", "/v1/leads", "[leads:write]"},     // case-insensitive in ASCII
		{"po\u017Ft", "/v1/leadsx", "none"},        // the long s upper-cases to S in Unicode: not POST
		{"po\u017Ft", "/v1/leads", "[leads:read]"}, // another method: the rule for every method
		{"g\u0435t", "/", "none"},                  // a Cyrillic e: not GET
	} {
		r, ok := a.Match(tc.method, tc.path)
		got := "none"
		if ok {
			got = "[" + joinScopes(r.Scopes) + "]"
		}
		if got != tc.want {
			t.Errorf("%s %s matched %s, want %s", tc.method, tc.path, got, tc.want)
		}
	}
}

func joinScopes(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out
}

func TestAPIDefaults(t *testing.T) {
	a := newAPI(testAPI("acme", "leads", 1, nil))
	if !a.AcceptsNamespace("acme") || a.AcceptsNamespace("globex") {
		t.Errorf("an API without namespaces must accept its own namespace only")
	}
	if !a.AcceptsEnvironment("live") || !a.AcceptsEnvironment("test") || a.AcceptsEnvironment("") {
		t.Errorf("an API without environments accepts live and test keys, nothing else")
	}
	if a.Authenticate {
		t.Errorf("the default action is deny")
	}
	all := newAPI(testAPI("acme", "leads", 1, func(s *latchkeyv1.APISpec) {
		s.Namespaces = []string{"*"}
		s.Environments = []latchkeyv1.Environment{latchkeyv1.EnvironmentLive}
	}))
	if !all.AcceptsNamespace("globex") || all.AcceptsEnvironment("test") {
		t.Errorf("namespaces [*] accepts every namespace; environments [live] refuses test keys")
	}
}

// The oldest API holds an identifier and each host; a newcomer that claims either
// is not served at all, and the holder is unaffected.
func TestAPIClaims(t *testing.T) {
	x := NewIndex(logr.Discard())
	x.UpsertAPI(testAPI("victim", "leads", 100, func(s *latchkeyv1.APISpec) { s.Hosts = []string{"api.example.com"} }))
	x.UpsertAPI(testAPI("tenant", "same-identifier", 200, func(s *latchkeyv1.APISpec) { s.Identifier = "https://leads.example" }))
	x.UpsertAPI(testAPI("tenant", "same-host", 200, func(s *latchkeyv1.APISpec) { s.Hosts = []string{"other.example.com", "api.example.com"} }))
	if a, ok := x.APIForHost("API.example.com:443"); !ok || a.Ref.Namespace != "victim" {
		t.Fatalf("the host belongs to the oldest API, got %v %v", a, ok)
	}
	for _, name := range []string{"same-identifier", "same-host"} {
		if _, ok := x.API("tenant", name); ok {
			t.Errorf("tenant/%s claims what an older API holds and must not be served", name)
		}
	}
	if _, ok := x.APIForHost("other.example.com"); ok {
		t.Errorf("a conflicting API serves none of its hosts")
	}
	x.DeleteAPI("victim/leads")
	if a, ok := x.APIForHost("api.example.com"); !ok || a.Ref.Name != "same-host" {
		t.Errorf("once the holder is gone the next claim holds the host")
	}
	if known, served := x.APIs(); known != 2 || served != 2 {
		t.Errorf("APIs() = %d, %d; want 2, 2", known, served)
	}
}

// Creation times have one-second precision: APIs created in the same second that
// claim the same host both give way, whatever their names.
func TestAPIClaimTie(t *testing.T) {
	x := NewIndex(logr.Discard())
	x.UpsertAPI(testAPI("b-team", "leads", 100, func(s *latchkeyv1.APISpec) { s.Hosts = []string{"api.example.com"} }))
	x.UpsertAPI(testAPI("a-team", "aaa", 100, func(s *latchkeyv1.APISpec) { s.Hosts = []string{"api.example.com"} }))
	if a, ok := x.APIForHost("api.example.com"); ok {
		t.Fatalf("a tie must not be broken by name, but %s holds the host", a.Ref)
	}
	if _, served := x.APIs(); served != 0 {
		t.Errorf("neither API of the tie is served")
	}
}

func TestDigestKeyIDIsTheCredentialKeyID(t *testing.T) {
	d := Digest(sha256.Sum256([]byte("lk_live_x")))
	if got, want := d.KeyID(), credential.KeyID(credential.Hash("lk_live_x")); got != want {
		t.Fatalf("KeyID() = %s, want %s", got, want)
	}
}

// A request's Host is matched by name: a port, a trailing dot or upper case is
// never a different claim.
func TestAPIForHostIgnoresPortCaseAndDot(t *testing.T) {
	x := NewIndex(logr.Discard())
	x.UpsertAPI(testAPI("ns", "leads", 1, func(s *latchkeyv1.APISpec) { s.Hosts = []string{"api.example.com"} }))
	for _, host := range []string{"api.example.com", "API.Example.com:443", "api.example.com.", "api.example.com:8443"} {
		if _, ok := x.APIForHost(host); !ok {
			t.Errorf("%q is api.example.com", host)
		}
	}
	if _, ok := x.APIForHost("example.com"); ok {
		t.Errorf("example.com is another host")
	}
}

// HEAD needs what GET needs, whatever the case of the method.
func TestRuleMatchHeadAndCase(t *testing.T) {
	a := newAPI(testAPI("ns", "leads", 1, nil))
	for _, method := range []string{"HEAD", "head", "get"} {
		if r, ok := a.Match(method, "/v1/leads"); !ok || len(r.Scopes) != 1 || r.Scopes[0] != "leads:read" {
			t.Errorf("%s /v1/leads must need leads:read", method)
		}
	}
}

// A change that keeps the claims (rules, scopes, status) swaps the API in place.
func TestAPIUpdateKeepsClaims(t *testing.T) {
	x := NewIndex(logr.Discard())
	x.UpsertAPI(testAPI("ns", "leads", 1, func(s *latchkeyv1.APISpec) { s.Hosts = []string{"api.example.com"} }))
	x.UpsertAPI(testAPI("ns", "leads", 1, func(s *latchkeyv1.APISpec) {
		s.Hosts = []string{"api.example.com"}
		s.DefaultAction = latchkeyv1.DefaultActionAuthenticate
	}))
	a, ok := x.APIForHost("api.example.com")
	if !ok || !a.Authenticate {
		t.Fatalf("the updated API serves the host")
	}
	if b, _ := x.API("ns", "leads"); b != a {
		t.Errorf("by name and by host give the same, updated API")
	}
}
