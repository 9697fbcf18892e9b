package controllers_test

import (
	"context"
	"fmt"
	"regexp"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

var oauthClientKind = kinds[1]

var _ = Describe("OAuthClient", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("writes everything a workload needs to get a token into the Secret", func() {
		obj := create(ctx, oauthClientKind, ns, "crm-sync", nil)
		ready := waitReady(ctx, oauthClientKind, obj, latchkeyv1.ReasonIssued).(*latchkeyv1.OAuthClient)

		Expect(ready.Status.ClientID).To(MatchRegexp(`^[0-9a-f]{24}$`))
		secret := getSecret(ctx, ns, "crm-sync-oauthclient")
		Expect(string(secret.Data[latchkeyv1.ClientIDSecretKey])).To(Equal(ready.Status.ClientID))
		Expect(regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(credentialIn(oauthClientKind, secret))).To(BeTrue(), "a client secret of 64 lowercase hex digits")
		Expect(string(secret.Data[latchkeyv1.TokenURLSecretKey])).To(Equal(testTokenURL))
		Expect(string(secret.Data[latchkeyv1.IssuerSecretKey])).To(Equal(testIssuerURL))
	})

	It("defaults grant types, auth methods and token lifetime", func() {
		obj := create(ctx, oauthClientKind, ns, "defaults", nil).(*latchkeyv1.OAuthClient)
		Expect(obj.Spec.GrantTypes).To(ConsistOf(latchkeyv1.GrantClientCredentials))
		Expect(obj.Spec.TokenEndpointAuthMethods).To(ConsistOf(latchkeyv1.AuthClientSecretBasic, latchkeyv1.AuthClientSecretPost))
		Expect(obj.Spec.AccessTokenTTL.Duration).To(Equal(time.Hour))
	})

	It("keeps the client_id through rotation, revocation and restoration", func() {
		obj := create(ctx, oauthClientKind, ns, "stable", func(o controllers.CredentialObject) {
			o.Lifecycle().Rotation = &latchkeyv1.RotationPolicy{GracePeriod: &metav1.Duration{}}
		})
		ready := waitReady(ctx, oauthClientKind, obj, latchkeyv1.ReasonIssued).(*latchkeyv1.OAuthClient)
		clientID := ready.Status.ClientID
		first := credential.Hash(credentialIn(oauthClientKind, getSecret(ctx, ns, ready.SecretName())))

		patch(ctx, oauthClientKind, ready, func(o controllers.CredentialObject) {
			o.SetAnnotations(map[string]string{latchkeyv1.RotateAnnotation: "1"})
		})
		Eventually(func() string {
			return credential.Hash(credentialIn(oauthClientKind, getSecret(ctx, ns, ready.SecretName())))
		}).ShouldNot(Equal(first), "the client secret was not rotated")
		patch(ctx, oauthClientKind, ready, func(o controllers.CredentialObject) { o.Lifecycle().Revoked = true })
		Eventually(readyReason).WithArguments(ctx, oauthClientKind, obj).Should(Equal(latchkeyv1.ReasonRevoked))
		Expect(get(ctx, oauthClientKind, ns, "stable").(*latchkeyv1.OAuthClient).Status.ClientID).To(Equal(clientID))
		patch(ctx, oauthClientKind, ready, func(o controllers.CredentialObject) { o.Lifecycle().Revoked = false })

		restored := waitReady(ctx, oauthClientKind, obj, latchkeyv1.ReasonIssued).(*latchkeyv1.OAuthClient)
		Expect(restored.Status.ClientID).To(Equal(clientID))
		Expect(string(getSecret(ctx, ns, ready.SecretName()).Data[latchkeyv1.ClientIDSecretKey])).To(Equal(clientID))
	})

	It("refuses to change a client_id once assigned", func() {
		obj := create(ctx, oauthClientKind, ns, "pinned", nil)
		ready := waitReady(ctx, oauthClientKind, obj, latchkeyv1.ReasonIssued).(*latchkeyv1.OAuthClient)
		base := ready.DeepCopy()
		ready.Status.ClientID = "000000000000000000000000"
		err := k8s.Status().Patch(ctx, ready, client.MergeFrom(base))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("clientID never changes once assigned"))
	})

	It("refuses a client_id that another OAuthClient holds by right, until that one is gone", func() {
		original := waitReady(ctx, oauthClientKind, create(ctx, oauthClientKind, ns, "original", nil), latchkeyv1.ReasonIssued).(*latchkeyv1.OAuthClient)
		// An administrator restores a status that claims the same client_id (as a
		// backup tool writing status might). Retried with a new object until the
		// restore lands before the manager records an id of its own.
		other := newNamespace()
		var restored *latchkeyv1.OAuthClient
		attempt := 0
		Eventually(func() error {
			attempt++
			restored = create(ctx, oauthClientKind, other, fmt.Sprintf("restored-%d", attempt), nil).(*latchkeyv1.OAuthClient)
			base := restored.DeepCopy()
			restored.Status.ClientID = original.Status.ClientID
			return k8s.Status().Patch(ctx, restored, client.MergeFrom(base))
		}).Should(Succeed())

		Eventually(readyReason).WithArguments(ctx, oauthClientKind, restored).Should(Equal(latchkeyv1.ReasonClientIDConflict))
		Expect(kstatusOf(ctx, restored).Status).To(Equal(status.FailedStatus))
		Eventually(eventReasons).WithArguments(ctx, other, restored.Name).Should(ContainElement(latchkeyv1.ReasonClientIDConflict))
		Expect(get(ctx, oauthClientKind, other, restored.Name).CredentialStatus().Credentials).To(BeEmpty())
		Eventually(secretExists).WithArguments(ctx, other, restored.SecretName()).Should(BeFalse(), "no Secret carries the duplicated id")
		Consistently(readyReason).WithArguments(ctx, oauthClientKind, original).WithTimeout(time.Second).
			Should(Equal(latchkeyv1.ReasonIssued), "the client the id was made for keeps it")

		Expect(k8s.Delete(ctx, original)).To(Succeed())
		Eventually(readyReason).WithArguments(ctx, oauthClientKind, restored).WithTimeout(45*time.Second).
			Should(Equal(latchkeyv1.ReasonIssued), "re-examined on its own within 30s")
	})

	It("gives every client its own client_id", func() {
		ids := map[string]bool{}
		for _, name := range []string{"a", "b", "c", "d", "e"} {
			ready := waitReady(ctx, oauthClientKind, create(ctx, oauthClientKind, ns, name, nil), latchkeyv1.ReasonIssued)
			ids[ready.(*latchkeyv1.OAuthClient).Status.ClientID] = true
		}
		Expect(ids).To(HaveLen(5))
	})

	DescribeTable("rejects bad input with a clear API server error",
		func(mutate func(*latchkeyv1.OAuthClientSpec), message string) {
			c := &latchkeyv1.OAuthClient{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"},
				Spec:       latchkeyv1.OAuthClientSpec{Audiences: []string{"https://api.example.com"}},
			}
			mutate(&c.Spec)
			err := k8s.Create(ctx, c)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("no audience", func(s *latchkeyv1.OAuthClientSpec) { s.Audiences = nil }, "spec.audiences"),
		Entry("unknown grant type", func(s *latchkeyv1.OAuthClientSpec) {
			s.GrantTypes = []latchkeyv1.GrantType{"password"}
		}, `supported values: "client_credentials", "authorization_code", "refresh_token"`),
		Entry("authorization_code without redirect URIs", func(s *latchkeyv1.OAuthClientSpec) {
			s.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}
		}, "redirectURIs is required when grantTypes includes authorization_code"),
		Entry("refresh_token alone", func(s *latchkeyv1.OAuthClientSpec) {
			s.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantClientCredentials, latchkeyv1.GrantRefreshToken}
		}, "refresh_token is only issued together with authorization_code"),
		Entry("plain http redirect to a public host", func(s *latchkeyv1.OAuthClientSpec) {
			s.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}
			s.RedirectURIs = []string{"http://app.example.com/callback"}
		}, "redirect URIs must be https, or http on localhost"),
		Entry("token lifetime over a day", func(s *latchkeyv1.OAuthClientSpec) {
			s.AccessTokenTTL = &metav1.Duration{Duration: 25 * time.Hour}
		}, "accessTokenTTL must be between 1m and 24h"),
		Entry("token lifetime under a minute", func(s *latchkeyv1.OAuthClientSpec) {
			s.AccessTokenTTL = &metav1.Duration{Duration: 30 * time.Second}
		}, "accessTokenTTL must be between 1m and 24h"),
		Entry("unknown auth method", func(s *latchkeyv1.OAuthClientSpec) {
			s.TokenEndpointAuthMethods = []latchkeyv1.TokenEndpointAuthMethod{"private_key_jwt"}
		}, "spec.tokenEndpointAuthMethods[0]"),
		Entry("bad scope", func(s *latchkeyv1.OAuthClientSpec) { s.Scopes = []string{"everything"} }, "spec.scopes[0]"),
		Entry("redirect URI with a fragment", redirectTo("https://app.example.com/cb#frag"), "must not contain a fragment"),
		Entry("redirect URI with user information", redirectTo("https://user:pw@app.example.com/cb"), "must not contain user information"),
		Entry("redirect URI with a wildcard", redirectTo("https://*.example.com/cb"), "no wildcards"),
		Entry("redirect URI without a host", redirectTo("https:///cb"), "absolute URL with a host"),
		Entry("redirect URI that is a path", redirectTo("/cb"), "absolute URL with a host"),
		Entry("redirect URI with port 0", redirectTo("https://app.example.com:0/cb"), "port must be between 1 and 65535"),
		Entry("redirect URI with port 65536", redirectTo("https://app.example.com:65536/cb"), "port must be between 1 and 65535"),
		Entry("redirect URI with an empty port", redirectTo("http://localhost:/cb"), "port must be between 1 and 65535"),
		Entry("http redirect to a host named like loopback", redirectTo("http://localhost.evil.example/cb"), "redirect URIs must be https, or http on localhost"),
		Entry("introspection that serves nothing", func(s *latchkeyv1.OAuthClientSpec) {
			s.Introspection = &latchkeyv1.IntrospectionPolicy{Namespaces: []string{"*"}}
		}, "introspection needs audiences"),
	)

	It("accepts https redirects and http on loopback for authorization_code", func() {
		c := &latchkeyv1.OAuthClient{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webapp"},
			Spec: latchkeyv1.OAuthClientSpec{
				Audiences:  []string{"https://api.example.com"},
				GrantTypes: []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode, latchkeyv1.GrantRefreshToken},
				RedirectURIs: []string{"https://app.example.com/cb", "http://localhost:8080/cb", "http://127.0.0.1/cb", "http://[::1]:9000/cb",
					"https://app.example.com:65535/cb?x=1", "https://app.example.com:443"},
			},
		}
		Expect(k8s.Create(ctx, c)).To(Succeed())
	})
})

// redirectTo sets up an authorization_code client with one redirect URI.
func redirectTo(uri string) func(*latchkeyv1.OAuthClientSpec) {
	return func(s *latchkeyv1.OAuthClientSpec) {
		s.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}
		s.RedirectURIs = []string{uri}
	}
}
