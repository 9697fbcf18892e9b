package thirdparty

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// A code pushed out of a full list of remembered redemptions must not be
// redeemable again: it is refused when older than the oldest one remembered.
func TestRedeemedCodeMayBeForgotten(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	full := make([]latchkeyv1.RedeemedCode, latchkeyv1.MaxRedeemedCodes)
	for i := range full {
		full[i] = latchkeyv1.RedeemedCode{ID: "x", ExpiresAt: metav1.Unix(now.Unix()+30+int64(i), 0)}
	}
	oldestCode := now.Unix() + 30 - 1 // its record would be ExpiresAt now+30
	for _, tc := range []struct {
		name       string
		remembered []latchkeyv1.RedeemedCode
		expires    int64
		want       bool
	}{
		{"a full list, a code older than every record", full, oldestCode - 5, true},
		{"a full list, a code as old as the oldest record", full, oldestCode, false},
		{"a full list, a newer code", full, now.Unix() + 50, false},
		{"a list with room", full[1:], oldestCode - 5, false},
		{"a full list whose oldest has expired has room again", append([]latchkeyv1.RedeemedCode{{ExpiresAt: metav1.Unix(now.Unix()-1, 0)}}, full[1:]...), oldestCode - 5, false},
	} {
		if got := redeemedCodeMayBeForgotten(tc.remembered, tc.expires, now); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The login cookie carries the __Host- prefix, with the path / that the prefix
// requires, where the issuer is HTTPS.
func TestLoginCookieName(t *testing.T) {
	for _, tc := range []struct{ issuer, name, path string }{
		{"https://auth.example.com", "__Host-latchkey_login", "/"},
		{"http://127.0.0.1:8080", "latchkey_login", "/oauth2/"},
	} {
		s := &Server{Host: Host{IssuerURL: tc.issuer}}
		rec := httptest.NewRecorder()
		s.clearLoginCookie(rec)
		cookie := rec.Header().Get("Set-Cookie")
		if !strings.HasPrefix(cookie, tc.name+"=") || !strings.Contains(cookie, "Path="+tc.path+";") || !strings.Contains(cookie, "Secure") {
			t.Errorf("issuer %s: Set-Cookie %q, want %s with Path=%s, Secure", tc.issuer, cookie, tc.name, tc.path)
		}
		if strings.Contains(cookie, "Domain=") {
			t.Errorf("issuer %s: a login cookie names no domain: %q", tc.issuer, cookie)
		}
	}
}

// Group names Kubernetes reserves are refused, as user names are, whatever the
// provider says.
func TestMapClaimsRefusesReservedGroups(t *testing.T) {
	u, err := newUpstream(UpstreamConfig{IssuerURL: "https://idp.test", UsernamePrefix: "-", GroupsClaim: "groups"}, logr.Discard(), prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calls"}, []string{"call"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.mapClaims(map[string]any{"sub": "alice", "groups": []any{"devs", "system:masters"}}); err == nil {
		t.Error("system:masters from the provider was accepted")
	}
	if _, err := u.mapClaims(map[string]any{"sub": "alice", "groups": "system:nodes"}); err == nil {
		t.Error("system:nodes from the provider was accepted")
	}
	got, err := u.mapClaims(map[string]any{"sub": "alice", "groups": []any{"devs"}})
	if err != nil || got.Name != "alice" || len(got.Groups) != 1 || got.Groups[0] != "devs" {
		t.Errorf("an ordinary group: %+v, %v", got, err)
	}
	prefixed, err := newUpstream(UpstreamConfig{IssuerURL: "https://idp.test", UsernamePrefix: "-", GroupsClaim: "groups", GroupsPrefix: "idp:"}, logr.Discard(), prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calls"}, []string{"call"}))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := prefixed.mapClaims(map[string]any{"sub": "alice", "groups": []any{"system:masters"}}); err != nil || got.Groups[0] != "idp:system:masters" {
		t.Errorf("with a prefix, the group is the provider's own: %+v, %v", got, err)
	}
}
