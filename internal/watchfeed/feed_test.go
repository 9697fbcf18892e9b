package watchfeed

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/accesstoken"
	"github.com/latchkey-dev/latchkey/internal/index"
)

// TestStreamList decodes a list as the API server writes it into the slim types,
// and checks that what the index reads survives and the rest is dropped.
func TestStreamList(t *testing.T) {
	used := metav1.NewTime(time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC))
	expires := metav1.NewTime(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	full := latchkeyv1.APIKeyList{
		TypeMeta: metav1.TypeMeta{APIVersion: "latchkey.dev/v1alpha1", Kind: "APIKeyList"},
		ListMeta: metav1.ListMeta{ResourceVersion: "4242", Continue: "next"},
	}
	for _, name := range []string{"a", "b"} {
		k := latchkeyv1.APIKey{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "crm", Name: name, UID: types.UID("uid-" + name), ResourceVersion: "7",
				Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"big":"blob"}`},
				Labels:        map[string]string{"team": "billing"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: "Update", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{}}`)}}},
			},
			Spec: latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}, Environment: latchkeyv1.EnvironmentTest,
				CredentialSpec: latchkeyv1.CredentialSpec{ExpiresAt: &expires}},
		}
		k.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: "sha256:" + strings.Repeat("ab", 32), Serial: 3, IssuedAt: used}}
		k.Status.LastUsedAt = &used
		k.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: "True", Reason: "Issued", LastTransitionTime: used}}
		full.Items = append(full.Items, k)
	}
	body, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}

	listMeta, items, err := streamList[cachedAPIKey](strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	if listMeta.ResourceVersion != "4242" || listMeta.Continue != "next" {
		t.Errorf("list metadata = %+v", listMeta)
	}
	if len(items) != 2 {
		t.Fatalf("%d items, want 2", len(items))
	}
	for i, item := range items {
		got, want := item.apiKey(), &full.Items[i]
		if got.Name != want.Name || got.Namespace != want.Namespace || got.UID != want.UID || item.ResourceVersion != "7" {
			t.Errorf("item %d: metadata %s/%s %s", i, got.Namespace, got.Name, got.UID)
		}
		if m := item.ObjectMeta; m.ManagedFields != nil || m.Annotations != nil || m.Labels != nil {
			t.Errorf("item %d: decoded what the index never reads: %+v", i, item.ObjectMeta)
		}
		if got.Spec.Environment != latchkeyv1.EnvironmentTest || !got.Spec.ExpiresAt.Equal(&expires) || len(got.Spec.Scopes) != 1 {
			t.Errorf("item %d: spec %+v", i, got.Spec)
		}
		if len(got.Status.Credentials) != 1 || got.Status.Credentials[0].Hash != want.Status.Credentials[0].Hash ||
			!got.Status.LastUsedAt.Equal(&used) {
			t.Errorf("item %d: status %+v", i, got.Status)
		}
	}

	for _, broken := range []string{"", "[]", string(body[:len(body)/2]), `{"items":{}}`} {
		if _, _, err := streamList[cachedAPIKey](strings.NewReader(broken)); err == nil {
			t.Errorf("no error for %.40q", broken)
		}
	}
}

// TestGrantFeedTellsHowFarItHasDelivered drives the OAuthGrant feed as a
// Reflector does (a list, then events, each followed by its resourceVersion) and
// checks what the index then makes of a token issued under a grant it has not
// delivered: accepted while the feed is behind the token's version, refused once
// it is past it without the grant.
func TestGrantFeedTellsHowFarItHasDelivered(t *testing.T) {
	x := index.NewIndex(logr.Discard())
	c := &latchkeyv1.OAuthClient{Spec: latchkeyv1.OAuthClientSpec{ClientType: latchkeyv1.ClientPublic,
		GrantTypes: []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}, Scopes: []string{"leads:read"}, Audiences: []string{"api"}}}
	c.Namespace, c.Name, c.UID, c.Status.ClientID = "partners", "crm", "client-uid", "0123456789abcdef01234567"
	x.UpsertClient(c)
	claims := &accesstoken.Claims{ClientID: c.Status.ClientID, Namespace: "partners", ClientUID: "client-uid", Scope: "leads:read",
		Workspace: "acme", GrantUID: "grant-uid", Family: "f1", GrantVersion: "105"}
	claims.Audience = []string{"api"}
	claims.IssuedAt = jwt.NewNumericDate(time.Now())
	accepted := func() bool { _, ok := x.AcceptToken(claims, time.Now()); return ok }

	feed := grantFeed("", clock.RealClock{}, x)
	if err := feed.Replace(nil, "100"); err != nil {
		t.Fatal(err)
	}
	if !accepted() {
		t.Fatal("refused while the feed has delivered only up to 100")
	}
	other := &cachedOAuthGrant{cachedMeta: cachedMeta{ObjectMeta: metav1.ObjectMeta{Namespace: "elsewhere", Name: "g", UID: "other", ResourceVersion: "106"}}}
	if err := feed.Add(other); err != nil {
		t.Fatal(err)
	}
	feed.UpdateResourceVersion("106")
	if accepted() {
		t.Fatal("accepted once the feed is past the token's version without its grant")
	}
}

// A list's deep copy shares nothing with it: the Reflector may hand either on.
func TestCachedListDeepCopy(t *testing.T) {
	list := &cachedList[cachedAPIKey, *cachedAPIKey]{ListMeta: metav1.ListMeta{ResourceVersion: "7"},
		Items: []cachedAPIKey{{Spec: latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}}}}}
	out, ok := list.DeepCopyObject().(*cachedList[cachedAPIKey, *cachedAPIKey])
	if !ok || out.ResourceVersion != "7" || len(out.Items) != 1 || out.Items[0].Spec.Scopes[0] != "leads:read" {
		t.Fatalf("the copy is %#v", out)
	}
	out.ResourceVersion, out.Items[0].Spec.Scopes[0] = "8", "leads:write"
	if list.ResourceVersion != "7" || list.Items[0].Spec.Scopes[0] != "leads:read" {
		t.Fatalf("changing the copy changed the list: %#v", list)
	}
}
