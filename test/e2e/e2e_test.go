//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const ns = "e2e"

// client is an OAuthClient as its Secret describes it.
type client struct{ ID, Secret, TokenURL string }

func readClient(name string) client {
	return client{
		ID:       secretValue(ns, name+"-oauthclient", "client_id"),
		Secret:   secretValue(ns, name+"-oauthclient", "client_secret"),
		TokenURL: secretValue(ns, name+"-oauthclient", "token_url"),
	}
}

func (c client) config() *clientcredentials.Config {
	return &clientcredentials.Config{ClientID: c.ID, ClientSecret: c.Secret, TokenURL: c.TokenURL, AuthStyle: oauth2.AuthStyleInHeader}
}

// introspect asks the token server about token, authenticated as the resource server rs.
func introspect(rs client, token string) map[string]any {
	req, err := http.NewRequest(http.MethodPost, issuer+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(rs.ID), url.QueryEscape(rs.Secret))
	resp, err := http.DefaultClient.Do(req)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	ExpectWithOffset(1, resp.StatusCode).To(Equal(http.StatusOK))
	var body map[string]any
	ExpectWithOffset(1, json.NewDecoder(resp.Body).Decode(&body)).To(Succeed())
	return body
}

func active(rs client, token string) bool { return introspect(rs, token)["active"] == true }

// credentialHash is how status names a credential: "sha256:<hex>".
func credentialHash(plaintext string) string {
	sum := sha256.Sum256([]byte(plaintext))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tokenStatus is the HTTP status of a client_credentials request.
func tokenStatus(c client) int {
	req, err := http.NewRequest(http.MethodPost, issuer+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, c.Secret)
	resp, err := http.DefaultClient.Do(req)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	resp.Body.Close()
	return resp.StatusCode
}

// within fails unless cond holds within limit, and reports how long it took.
func within(limit time.Duration, what string, cond func() bool) {
	start := time.Now()
	EventuallyWithOffset(1, cond).WithTimeout(limit).WithPolling(10*time.Millisecond).Should(BeTrue(), what)
	AddReportEntry(what, time.Since(start).String())
}

// snapshot is a digest of every credential-bearing field in the namespace (Secret
// data and status hashes), by object: a failed comparison prints no credential.
func snapshot() map[string]string {
	out := kubectl("get", "secrets,apikeys,oauthclients", "-n", ns, "-o",
		`jsonpath={range .items[*]}{.kind}/{.metadata.name}{"\t"}{.data} {.status.credentials[*].hash}{"\n"}{end}`)
	objects := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, content, _ := strings.Cut(line, "\t")
		sum := sha256.Sum256([]byte(content))
		objects[name] = hex.EncodeToString(sum[:])
	}
	return objects
}

var _ = Describe("Latchkey, end to end", Ordered, func() {
	ctx := context.Background()
	var apiKey string
	var worker, ordersAPI client

	It("accepts the release manifests with server-side apply as they are", func() {
		rendered, err := exec.Command("go", "tool", "kustomize", "build", filepath.Join(root, "config", "default")).Output()
		Expect(err).NotTo(HaveOccurred())
		release, err := os.ReadFile(filepath.Join(root, "dist", "install.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(release)).To(Equal(string(rendered)), "dist/install.yaml is config/default rendered (make build-installer)")

		out := kubectl("apply", "--server-side", "-f", filepath.Join(root, "dist", "install.yaml"))
		Expect(out).To(ContainSubstring("deployment.apps/latchkey-manager serverside-applied"))
		Expect(out).To(ContainSubstring("deployment.apps/latchkey-tokenserver serverside-applied"))
		Expect(out).To(ContainSubstring("service/latchkey-tokenserver serverside-applied"))
		Expect(out).To(ContainSubstring("poddisruptionbudget.policy/latchkey-tokenserver serverside-applied"))
		Expect(out).To(ContainSubstring("deployment.apps/latchkey-authz serverside-applied"))
		Expect(out).To(ContainSubstring("poddisruptionbudget.policy/latchkey-authz serverside-applied"))
		Expect(out).To(ContainSubstring("customresourcedefinition.apiextensions.k8s.io/apis.latchkey.dev serverside-applied"))
		// Every container is locked down.
		contexts := kubectl("get", "deployments", "-n", "latchkey-system", "-o",
			`jsonpath={range .items[*].spec.template.spec.containers[*]}{.securityContext.readOnlyRootFilesystem} {.securityContext.allowPrivilegeEscalation} {.securityContext.capabilities.drop}{"\n"}{end}`)
		Expect(strings.Split(strings.TrimSpace(contexts), "\n")).To(HaveLen(3), "manager, token server, authorizer")
		for _, line := range strings.Split(strings.TrimSpace(contexts), "\n") {
			Expect(line).To(Equal(`true false ["ALL"]`))
		}
	})

	It("issues credentials declared in Git-style manifests", func() {
		kubectl("apply", "--server-side", "-f", filepath.Join("testdata", "credentials.yaml"))
		kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", ns, "apikey/orders", "oauthclient/worker", "oauthclient/orders-api")
		Expect(kubectl("get", "apikeys,oauthclients", "-n", ns)).To(And(ContainSubstring("orders"), ContainSubstring("worker")))

		apiKey = secretValue(ns, "orders-apikey", "api-key")
		Expect(regexp.MustCompile(`^lk_live_[0-9A-Za-z]{49}$`).MatchString(apiKey)).To(BeTrue(), "an API key is lk_live_ and 49 alphanumerics")
		status := kubectl("get", "apikey", "orders", "-n", ns, "-o", "json")
		Expect(strings.Contains(status, apiKey)).To(BeFalse(), "only the hash is in the resource")
		worker, ordersAPI = readClient("worker"), readClient("orders-api")
		Expect(worker.TokenURL).To(Equal(issuer + "/oauth2/token"))
	})

	It("exchanges the client's Secret for a token that verifies against the JWKS", func() {
		tok, err := worker.config().Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		set, err := jwk.Fetch(ctx, issuer+"/oauth2/jwks")
		Expect(err).NotTo(HaveOccurred())
		claims, err := jwt.Parse([]byte(tok.AccessToken), jwt.WithKeySet(set), jwt.WithIssuer(issuer), jwt.WithAudience("https://orders.e2e.test"))
		Expect(err).NotTo(HaveOccurred())
		sub, _ := claims.Subject()
		Expect(sub).To(Equal(worker.ID))
		Expect(time.Until(tok.Expiry)).To(BeNumerically("~", 10*time.Minute, time.Minute))

		By("and with the kubectl plugin")
		pluginToken := strings.TrimSpace(kubectl("latchkey", "token", "oauthclient/worker", "-n", ns))
		Expect(regexp.MustCompile(`^[\w-]+\.[\w-]+\.[\w-]+$`).MatchString(pluginToken)).To(BeTrue(), "the plugin prints a JWT")
		Expect(active(ordersAPI, pluginToken)).To(BeTrue())
	})

	It("introspects the API key and the access token for the resource server", func() {
		info := introspect(ordersAPI, apiKey)
		Expect(info).To(HaveKeyWithValue("active", true))
		Expect(info).To(HaveKeyWithValue("token_type", "api_key"))
		Expect(info).To(HaveKeyWithValue("scope", "orders:read orders:write"))
		Expect(info).To(HaveKeyWithValue("namespace", ns))
		Expect(info).To(HaveKeyWithValue("name", "orders"))

		tok, err := worker.config().Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(introspect(ordersAPI, tok.AccessToken)).To(HaveKeyWithValue("client_id", worker.ID))
		Expect(introspect(ordersAPI, "lk_live_not-a-real-key")).To(Equal(map[string]any{"active": false}))
	})

	It("rotates with kubectl annotate: the old key works through the grace period, then not", func() {
		kubectl("annotate", "apikey", "orders", "-n", ns, "--overwrite", "latchkey.dev/rotate=e2e-1")
		var rotated string
		// Hashes, not keys, in assertions: a failure message must not print a credential.
		Eventually(func() string { rotated = secretValue(ns, "orders-apikey", "api-key"); return credentialHash(rotated) }).
			ShouldNot(Equal(credentialHash(apiKey)))
		Eventually(func() bool { return active(ordersAPI, rotated) }).Should(BeTrue())
		// 10 s of grace: long enough that a loaded machine (kubectl, polling) still
		// asks inside it; a 4 s period was seen to end before the question on a
		// machine running several suites at once.
		Expect(active(ordersAPI, apiKey)).To(BeTrue(), "the old key is still accepted in its 10s grace period")
		Eventually(func() bool { return active(ordersAPI, apiKey) }).WithTimeout(20*time.Second).Should(BeFalse(), "and rejected after it")
		Expect(active(ordersAPI, rotated)).To(BeTrue())
		apiKey = rotated

		By("and the manager drops the old hash once the grace period is over")
		// The token server stops accepting the old key at notAfter by the clock; the
		// manager prunes its hash from status a moment later. The rotation is over
		// only then: a spec that starts earlier would see status change under it.
		kubectl("wait", "--for=jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}=Issued", "--timeout=30s", "-n", ns, "apikey/orders")
		Expect(kubectl("get", "apikey", "orders", "-n", ns, "-o", "jsonpath={.status.credentials[*].hash}")).
			To(Equal(credentialHash(rotated)), "only the current key is accepted")
	})

	It("keeps every key when the manager restarts mid-way", func() {
		// Start from a settled lifecycle: no grace period is due to end while we watch.
		for _, obj := range []string{"apikey/orders", "oauthclient/worker", "oauthclient/orders-api"} {
			Expect(kubectl("get", obj, "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`)).
				To(Equal("Issued"), "%s has no credential in a grace period", obj)
		}
		before := snapshot()
		Expect(before).To(HaveKey("Secret/orders-apikey"))
		manager.stop()
		manager = startManager()
		Consistently(snapshot, "5s", "500ms").Should(Equal(before), "no Secret and no hash changed")
		Expect(active(ordersAPI, apiKey)).To(BeTrue())

		By("and the restarted manager still does its job")
		applyYAML(`apiVersion: latchkey.dev/v1alpha1
kind: APIKey
metadata: {name: after-restart, namespace: e2e}
spec: {scopes: ["orders:read"]}`)
		kubectl("wait", "--for=condition=Ready", "--timeout=30s", "-n", ns, "apikey/after-restart")
	})

	It("serves again after a token server restart, once its caches have synced", func() {
		tokenSrv.stop()
		Expect(httpStatus(issuer+"/readyz")).To(Equal(0), "down")
		tokenSrv = startTokenServer()
		Eventually(func() int { return httpStatus(issuer + "/readyz") }).Should(Equal(http.StatusOK))
		Expect(active(ordersAPI, apiKey)).To(BeTrue(), "ready means the cache holds every key")
		_, err := worker.config().Token(ctx)
		Expect(err).NotTo(HaveOccurred())
	})

	It("rejects a revoked API key and a revoked client within a second", func() {
		Expect(active(ordersAPI, apiKey)).To(BeTrue())
		kubectl("patch", "apikey", "orders", "-n", ns, "--type", "merge", "-p", `{"spec":{"revoked":true}}`)
		within(time.Second, "revoked API key rejected by introspection", func() bool { return !active(ordersAPI, apiKey) })

		tok, err := worker.config().Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(tokenStatus(worker)).To(Equal(http.StatusOK))
		kubectl("latchkey", "revoke", "oauthclient/worker", "-n", ns, "--wait=false")
		within(time.Second, "revoked client refused by the token endpoint", func() bool { return tokenStatus(worker) == http.StatusUnauthorized })
		within(time.Second, "revoked client's token rejected by introspection", func() bool { return !active(ordersAPI, tok.AccessToken) })

		// The token servers act on spec.revoked itself; the manager's status, Event
		// and Secret deletion follow on its own schedule.
		Eventually(func() string {
			return kubectl("get", "apikey", "orders", "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`)
		}).Should(Equal("Revoked"))
		Eventually(func() string { return kubectl("describe", "apikey", "orders", "-n", ns) }).
			Should(MatchRegexp(`(?s)Conditions:.*Revoked.*Events:.*Revoked`))
		Eventually(func() error { _, err := kubectlErr("get", "secret", "orders-apikey", "-n", ns); return err }).
			Should(MatchError(ContainSubstring("NotFound")), "the Secret is deleted")
	})

	It("restores with the plugin, with a brand-new key", func() {
		out := kubectl("latchkey", "restore", "apikey/orders", "-n", ns)
		Expect(out).To(ContainSubstring("apikey/orders restored"))
		restored := secretValue(ns, "orders-apikey", "api-key")
		Expect(credentialHash(restored)).NotTo(Equal(credentialHash(apiKey)))
		Eventually(func() bool { return active(ordersAPI, restored) }).Should(BeTrue())
		Expect(active(ordersAPI, apiKey)).To(BeFalse(), "a revoked key never comes back")
		Expect(kubectl("latchkey", "status", "apikey/orders", "-n", ns)).To(MatchRegexp(`Ready:\s+True \(Issued`))
	})

	It("says so when a restored key cannot be issued: restoring an expired key is an error, not a success", func() {
		manifest := filepath.Join(GinkgoT().TempDir(), "lapsed.json")
		Expect(os.WriteFile(manifest, fmt.Appendf(nil, `{"apiVersion":"latchkey.dev/v1alpha1","kind":"APIKey","metadata":{"name":"lapsed","namespace":%q},
			"spec":{"revoked":true,"expiresAt":"2020-01-01T00:00:00Z"}}`, ns), 0o644)).To(Succeed())
		kubectl("apply", "-f", manifest)
		Eventually(func() string {
			return kubectl("get", "apikey", "lapsed", "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`)
		}).Should(Equal("Revoked"))
		out, err := kubectlErr("latchkey", "restore", "apikey/lapsed", "-n", ns)
		Expect(err).To(HaveOccurred(), out)
		Expect(out + err.Error()).To(ContainSubstring("no longer revoked, but no credential is issued: True (Expired"))
	})

	It("takes kubectl's own flags and completes KIND/NAME from the cluster", func() {
		// --as is kubectl's impersonation (k8s.io/cli-runtime): a user with no rights is refused.
		_, err := kubectlErr("latchkey", "status", "apikey/orders", "-n", ns, "--as", "nobody@example.com")
		Expect(err).To(MatchError(ContainSubstring("forbidden")))
		// Shell completion (cobra's __complete, what `kubectl latchkey completion bash` calls).
		Expect(kubectl("latchkey", "__complete", "rotate", "-n", ns, "apikey/o")).To(ContainSubstring("apikey/orders"))
	})

	It("runs `make demo` non-interactively to the end", func() {
		cmd := exec.Command(filepath.Join(root, "hack", "demo.sh"))
		cmd.Env = append(os.Environ(), "DEMO_ONESHOT=1")
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "demo output:\n%s", out)
		Expect(string(out)).To(ContainSubstring("demo: every step worked"))
		tempDir := regexp.MustCompile(`/[^ ]*latchkey-demo\.[A-Za-z0-9]+`).FindString(string(out))
		Expect(tempDir).NotTo(BeEmpty())
		Expect(tempDir).NotTo(BeADirectory(), "the demo removes its temporary data")
	})
})

// applyYAML applies a manifest from standard input, as `kubectl apply -f -` does.
func applyYAML(manifest string) {
	cmd := exec.Command(kubectlBin, "apply", "--server-side", "-f", "-")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(workDir, "admin.kubeconfig"))
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "%s", out)
}
