//go:build cluster

package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The tenant's objects: a client that gets tokens, a resource server that
// introspects them, an API key, the API the authorizer guards, and one key and one
// client to revoke.
const tenantNS = "shop"

func tenantManifests(ns string) string {
	return strings.ReplaceAll(`apiVersion: v1
kind: Namespace
metadata:
  name: NS
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: {name: worker, namespace: NS}
spec:
  grantTypes: [client_credentials]
  scopes: [leads:read]
  audiences: [https://api.example.com/leads]
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: {name: leads-api, namespace: NS}
spec:
  audiences: [https://api.example.com/leads]
  introspection:
    audiences: [https://api.example.com/leads]
    scopes: ["leads:*"]
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: {name: doomed-client, namespace: NS}
spec:
  grantTypes: [client_credentials]
  scopes: [leads:read]
  audiences: [https://api.example.com/leads]
---
apiVersion: latchkey.dev/v1alpha1
kind: APIKey
metadata: {name: reader, namespace: NS}
spec:
  scopes: [leads:read]
---
apiVersion: latchkey.dev/v1alpha1
kind: APIKey
metadata: {name: doomed-key, namespace: NS}
spec:
  scopes: [leads:read]
---
apiVersion: latchkey.dev/v1alpha1
kind: API
metadata: {name: leads, namespace: NS}
spec:
  identifier: https://api.example.com/leads
  hosts: [api.example.com]
  scopes:
  - {name: leads:read}
  rules:
  - {methods: [GET, HEAD], pathPrefix: /v1/leads, scopes: [leads:read]}
  defaultAction: deny
  environments: [live]
`, "NS", ns)
}

// oauthClient is an OAuthClient as its Secret describes it.
type oauthClient struct{ ID, Secret, TokenURL string }

func readClient(ns, name string) oauthClient {
	return oauthClient{
		ID:       secretValue(ns, name+"-oauthclient", "client_id"),
		Secret:   secretValue(ns, name+"-oauthclient", "client_secret"),
		TokenURL: secretValue(ns, name+"-oauthclient", "token_url"),
	}
}

// token requests a client_credentials token and returns the status and the token.
func token(c oauthClient) (int, string) {
	req, err := http.NewRequest(http.MethodPost, c.TokenURL, strings.NewReader("grant_type=client_credentials"))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.AccessToken
}

// authorize asks the authorizer's forward-auth endpoint about GET /v1/leads.
func authorize(authzURL, credential string) (int, http.Header) {
	req, err := forwardAuthRequest(context.Background(), authzURL, credential)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

// authzURL names the API in the auth URL's path (the authorizer reads no API
// from the query, which a proxy may copy from the client).
func authzURL(ns string) string {
	return "http://latchkey-authz." + systemNS + ".svc:8080/authz/api/" + ns + "/leads"
}

// within fails unless cond holds within limit of start, and reports the time.
func within(start time.Time, limit time.Duration, what string, cond func() bool) {
	EventuallyWithOffset(1, cond).WithTimeout(max(limit-time.Since(start), 10*time.Millisecond)).WithPolling(10*time.Millisecond).Should(BeTrue(), what)
	took := time.Since(start)
	AddReportEntry(what, took.Round(time.Millisecond).String())
	By(fmt.Sprintf("%s after %s", what, took.Round(time.Millisecond)))
	ExpectWithOffset(1, took).To(BeNumerically("<", limit), what)
}

// waitAvailable waits until every Deployment of the namespace is Available with
// all its replicas updated and ready, and no pod of it is still terminating.
func waitAvailable(ns string) {
	for _, d := range strings.Fields(kubectl("get", "deployments", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}")) {
		kubectl("rollout", "status", "deployment/"+d, "-n", ns, "--timeout=240s")
	}
	kubectl("wait", "--for=condition=Available", "deployment", "--all", "-n", ns, "--timeout=240s")
	EventuallyWithOffset(1, func() string {
		return kubectl("get", "pods", "-n", ns, "-o", `jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name} {end}`)
	}).WithTimeout(2*time.Minute).Should(BeEmpty(), "no pod is still terminating")
}

// snapshot is a digest of every credential-bearing field of the tenant namespace,
// per object: Secret data, status hashes and serials. Digests only: a failure
// message must not print a credential.
func snapshot(ns string) map[string]string {
	out := kubectl("get", "secrets,apikeys,oauthclients", "-n", ns, "-o",
		`jsonpath={range .items[*]}{.kind}/{.metadata.name}{"\t"}{.data}{" "}{.status.credentials[*].hash}{" "}{.metadata.annotations.latchkey\.dev/serial}{"\n"}{end}`)
	objects := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, content, _ := strings.Cut(line, "\t")
		sum := sha256.Sum256([]byte(content))
		objects[name] = hex.EncodeToString(sum[:8])
	}
	return objects
}

// latchkeyProcesses are the pids of the containers running the image's binary, as
// this machine sees them.
func latchkeyProcesses() []int {
	entries, err := os.ReadDir("/proc")
	Expect(err).NotTo(HaveOccurred())
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(raw), "/latchkey\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStatus is a field of /proc/<pid>/status.
func procStatus(pid int, field string) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// rootMountOptions are the mount options of a process's root file system.
func rootMountOptions(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			return f[5]
		}
	}
	return ""
}

// metricsOf scrapes url and returns the metric families' names it exposes.
func metricsOf(u string) map[string]bool {
	resp, err := httpc.Get(u)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	ExpectWithOffset(1, resp.StatusCode).To(Equal(http.StatusOK), u)
	raw, err := io.ReadAll(resp.Body)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	names := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names[strings.Fields(rest)[0]] = true
		}
	}
	return names
}

// metricLine is the line of an unlabelled series in u's exposition ("" when absent).
func metricLine(u, name string) string {
	resp, err := httpc.Get(u)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return line
		}
	}
	return ""
}

// endpoints are the ready addresses behind a Service, as Prometheus' service
// discovery sees them (one EndpointSlice per Service here).
func endpoints(ns, service string) []string {
	out := kubectl("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name="+service, "-o",
		`jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{" "}{end}`)
	return strings.Fields(out)
}

var _ = Describe("Latchkey on a real node", Ordered, func() {
	var worker, leadsAPI oauthClient
	var readerKey string

	It("installs from dist/install.yaml with kubectl, issues a token, and uninstalls", func() {
		kubectl("apply", "--server-side", "-f", filepath.Join(root, "dist", "install.yaml"))
		waitAvailable(systemNS)
		ns := "dist-tenant"
		manifest := filepath.Join(workDir, "dist-tenant.yaml")
		Expect(os.WriteFile(manifest, []byte(tenantManifests(ns)), 0o600)).To(Succeed())
		kubectl("apply", "-f", manifest)
		kubectl("wait", "--for=condition=Ready", "oauthclient/worker", "-n", ns, "--timeout=60s")
		c := readClient(ns, "worker")
		Expect(c.TokenURL).To(Equal("http://latchkey-tokenserver." + systemNS + ".svc/oauth2/token"))
		Eventually(func() int { status, _ := token(c); return status }).Should(Equal(http.StatusOK),
			"a token from the Secret's token_url, resolved by the cluster DNS, through the Service")

		kubectl("delete", "-f", manifest, "--wait=true", "--timeout=120s")
		kubectl("delete", "-f", filepath.Join(root, "dist", "install.yaml"), "--wait=true", "--timeout=180s")
		_, err := kubectlErr("get", "namespace", systemNS)
		Expect(err).To(MatchError(ContainSubstring("NotFound")), "the namespace is gone")
		_, err = kubectlErr("get", "crd", "apikeys.latchkey.dev")
		Expect(err).To(MatchError(ContainSubstring("NotFound")), "the CRDs are gone")
	})

	It("installs with helm and default values: every Deployment Available through the kubelet's probes, restricted, from the imported image", func() {
		kubectl("create", "namespace", systemNS)
		kubectl("label", "namespace", systemNS, "pod-security.kubernetes.io/enforce=restricted")
		start := time.Now()
		helm("install", "latchkey", chartDir, "--namespace", systemNS)
		waitAvailable(systemNS)
		AddReportEntry("helm install to every Deployment Available", time.Since(start).Round(100*time.Millisecond).String())
		for _, d := range []string{"latchkey-manager", "latchkey-tokenserver", "latchkey-authz"} {
			Expect(kubectl("get", "deployment", d, "-n", systemNS, "-o", "jsonpath={.status.readyReplicas}")).To(Equal("2"), d)
		}

		By("the restricted level is enforced: a privileged pod is refused")
		_, err := kubectlErr("run", "privileged-probe", "-n", systemNS, "--image="+chartImage(), "--dry-run=server",
			`--overrides={"spec":{"containers":[{"name":"privileged-probe","image":"`+chartImage()+`","securityContext":{"privileged":true}}]}}`)
		Expect(err).To(MatchError(ContainSubstring("violates PodSecurity")))

		By("the kubelet ran the imported image, never pulled it")
		img, err := tarball.ImageFromPath(imageTar, nil)
		Expect(err).NotTo(HaveOccurred())
		config, err := img.ConfigName()
		Expect(err).NotTo(HaveOccurred())
		for _, id := range strings.Fields(kubectl("get", "pods", "-n", systemNS, "-o", `jsonpath={.items[*].status.containerStatuses[*].imageID}`)) {
			Expect(id).To(HaveSuffix(config.String()), "the container runs the imported image")
		}
		Expect(kubectl("get", "events", "-n", systemNS, "--field-selector", "reason=Pulling", "-o", "name")).To(BeEmpty(), "no image was pulled")
		Expect(kubectl("get", "events", "-n", systemNS, "--field-selector", "reason=Pulled", "-o", "jsonpath={.items[*].message}")).
			To(ContainSubstring("already present on machine"))

		By("each container runs as 65532, with no capability, no privilege escalation, seccomp, and a read-only root")
		pids := latchkeyProcesses()
		Expect(pids).To(HaveLen(6), "two replicas of the manager, the token server and the authorizer")
		for _, pid := range pids {
			raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			By(fmt.Sprintf("pid %d: %s", pid, strings.ReplaceAll(string(raw), "\x00", " ")))
			Expect(procStatus(pid, "Uid")).To(Equal("65532 65532 65532 65532"))
			Expect(procStatus(pid, "Gid")).To(Equal("65532 65532 65532 65532"))
			Expect(procStatus(pid, "CapEff")).To(Equal("0000000000000000"))
			Expect(procStatus(pid, "NoNewPrivs")).To(Equal("1"))
			Expect(procStatus(pid, "Seccomp")).To(Equal("2"), "RuntimeDefault: a seccomp filter")
			Expect(strings.Split(rootMountOptions(pid), ",")).To(ContainElement("ro"))
		}
	})

	It("serves through its Services: a token, introspection, an API key through the authorizer, revocations refused within a second", func() {
		manifest := filepath.Join(workDir, "tenant.yaml")
		Expect(os.WriteFile(manifest, []byte(tenantManifests(tenantNS)), 0o600)).To(Succeed())
		kubectl("apply", "-f", manifest)
		kubectl("wait", "--for=condition=Ready", "oauthclients", "--all", "-n", tenantNS, "--timeout=60s")
		kubectl("wait", "--for=condition=Ready", "apikeys", "--all", "-n", tenantNS, "--timeout=60s")
		worker, leadsAPI = readClient(tenantNS, "worker"), readClient(tenantNS, "leads-api")
		readerKey = secretValue(tenantNS, "reader-apikey", "api-key")

		By("a client_credentials token at the Secret's token_url (cluster DNS, then the Service)")
		var access string
		Eventually(func() int { status, tok := token(worker); access = tok; return status }).Should(Equal(http.StatusOK))
		Expect(access).NotTo(BeEmpty())

		By("introspection by the resource server")
		introspectURL := strings.TrimSuffix(worker.TokenURL, "/token") + "/introspect"
		req, err := http.NewRequest(http.MethodPost, introspectURL, strings.NewReader(url.Values{"token": {access}}.Encode()))
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(leadsAPI.ID), url.QueryEscape(leadsAPI.Secret))
		resp, err := httpc.Do(req)
		Expect(err).NotTo(HaveOccurred())
		var body map[string]any
		Expect(json.NewDecoder(resp.Body).Decode(&body)).To(Succeed())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(body).To(HaveKeyWithValue("active", true))
		Expect(body).To(HaveKeyWithValue("client_id", worker.ID))

		By("an API key and an access token through the authorizer's Service (forward-auth)")
		Eventually(func() int { status, _ := authorize(authzURL(tenantNS), readerKey); return status }).Should(Equal(http.StatusOK))
		status, h := authorize(authzURL(tenantNS), readerKey)
		Expect(status).To(Equal(http.StatusOK))
		Expect(h.Get("X-Latchkey-Api")).To(Equal(tenantNS + "/leads"))
		Expect(h.Get("X-Latchkey-Name")).To(Equal("reader"))
		Expect(h.Get("X-Latchkey-Namespace")).To(Equal(tenantNS))
		status, _ = authorize(authzURL(tenantNS), access)
		Expect(status).To(Equal(http.StatusOK))

		By("a revoked API key is refused by the authorizer within a second")
		doomedKey := secretValue(tenantNS, "doomed-key-apikey", "api-key")
		Eventually(func() int { status, _ := authorize(authzURL(tenantNS), doomedKey); return status }).Should(Equal(http.StatusOK))
		start := time.Now()
		kubectl("patch", "apikey", "doomed-key", "-n", tenantNS, "--type=merge", "-p", `{"spec":{"revoked":true}}`)
		within(start, time.Second, "revoked API key refused by the authorizer", func() bool {
			status, _ := authorize(authzURL(tenantNS), doomedKey)
			return status == http.StatusUnauthorized
		})

		By("a revoked client gets no token within a second")
		doomed := readClient(tenantNS, "doomed-client")
		Eventually(func() int { status, _ := token(doomed); return status }).Should(Equal(http.StatusOK))
		start = time.Now()
		kubectl("patch", "oauthclient", "doomed-client", "-n", tenantNS, "--type=merge", "-p", `{"spec":{"revoked":true}}`)
		within(start, time.Second, "revoked client refused by the token server", func() bool {
			status, _ := token(doomed)
			return status == http.StatusUnauthorized
		})
	})

	It("exposes the documented metrics on every endpoint of its metrics Services", func() {
		// Prometheus (a ServiceMonitor) scrapes every endpoint of a metrics Service;
		// the token server's and the authorizer's are all alike.
		documented := map[string][]string{
			"latchkey-tokenserver-metrics:9090": {"latchkey_tokenserver_requests_total", "latchkey_tokenserver_request_duration_seconds",
				"latchkey_tokenserver_cached_apikey_hashes", "latchkey_tokenserver_cached_oauthclients",
				"latchkey_tokenserver_signing_key_age_seconds", "latchkey_tokenserver_cache_staleness_seconds", "go_goroutines"},
			"latchkey-authz-metrics:9090": {"latchkey_authz_decisions_total", "latchkey_authz_check_duration_seconds",
				"latchkey_authz_cached_apikey_hashes", "latchkey_authz_cached_oauthclients", "latchkey_authz_served_apis",
				"latchkey_authz_jwks_keys", "latchkey_authz_cache_staleness_seconds", "go_goroutines"},
		}
		By("a request to each replica, so that each has counted one")
		for _, addr := range endpoints(systemNS, "latchkey-tokenserver") {
			status, _ := token(oauthClient{ID: worker.ID, Secret: worker.Secret, TokenURL: "http://" + net.JoinHostPort(addr, "8080") + "/oauth2/token"})
			Expect(status).To(Equal(http.StatusOK), "token server %s", addr)
		}
		for _, addr := range endpoints(systemNS, "latchkey-authz") {
			status, _ := authorize("http://"+net.JoinHostPort(addr, "8080")+"/authz/api/"+tenantNS+"/leads", readerKey)
			Expect(status).To(Equal(http.StatusOK), "authorizer %s", addr)
		}
		for target, metrics := range documented {
			service, port, _ := strings.Cut(target, ":")
			By("scraping " + service + " through its Service and at each endpoint")
			names := metricsOf("http://" + service + "." + systemNS + ".svc:" + port + "/metrics")
			for _, m := range metrics {
				Expect(names).To(HaveKey(m), "%s through the Service", m)
			}
			addrs := endpoints(systemNS, service)
			Expect(addrs).To(HaveLen(2), "both replicas behind %s", service)
			for _, addr := range addrs {
				names := metricsOf("http://" + net.JoinHostPort(addr, port) + "/metrics")
				for _, m := range metrics {
					Expect(names).To(HaveKey(m), "%s at endpoint %s", m, addr)
				}
			}
		}

		By("each authorizer replica counts both in its share of every rate limit (its Service's EndpointSlices, read through its Role)")
		for _, addr := range endpoints(systemNS, "latchkey-authz") {
			Eventually(func() string {
				return metricLine("http://"+net.JoinHostPort(addr, "9090")+"/metrics", "latchkey_authz_rate_limit_replicas")
			}).Should(Equal("latchkey_authz_rate_limit_replicas 2"), "authorizer %s", addr)
		}

		By("the manager's: the per-credential state and the controllers' on the leader, the runtime's on both")
		Expect(metricsOf("http://latchkey-manager-metrics." + systemNS + ".svc:8080/metrics")).To(HaveKey("go_goroutines"))
		addrs := endpoints(systemNS, "latchkey-manager-metrics")
		Expect(addrs).To(HaveLen(2), "both managers behind latchkey-manager-metrics")
		union := map[string]bool{}
		for _, addr := range addrs {
			names := metricsOf("http://" + net.JoinHostPort(addr, "8080") + "/metrics")
			Expect(names).To(HaveKey("go_goroutines"), addr)
			for n := range names {
				union[n] = true
			}
		}
		for _, m := range []string{"latchkey_credential_ready", "latchkey_credential_withdrawn", "controller_runtime_reconcile_total"} {
			Expect(union).To(HaveKey(m), "%s on a manager endpoint", m)
		}
	})

	It("gives each component's Go heap 90% of its container's memory limit", func() {
		// Go knows nothing of the container: without GOMEMLIMIT a process whose live
		// heap fits its limit is OOM-killed on the way to its next collection
		// (cmd/memlimit.go). Read from the cgroup the kubelet made, so from the
		// limit as the node enforces it, not as the chart says it.
		for _, target := range []struct{ deployment, service, port string }{
			{"latchkey-manager", "latchkey-manager-metrics", "8080"},
			{"latchkey-tokenserver", "latchkey-tokenserver-metrics", "9090"},
			{"latchkey-authz", "latchkey-authz-metrics", "9090"},
		} {
			limit := resource.MustParse(kubectl("get", "deployment", target.deployment, "-n", systemNS, "-o",
				"jsonpath={.spec.template.spec.containers[0].resources.limits.memory}"))
			want := int64(float64(limit.Value()) * 0.9)
			addrs := endpoints(systemNS, target.service)
			Expect(addrs).To(HaveLen(2), "both replicas behind %s", target.service)
			for _, addr := range addrs {
				line := metricLine("http://"+net.JoinHostPort(addr, target.port)+"/metrics", "go_gc_gomemlimit_bytes")
				_, value, _ := strings.Cut(line, " ")
				got, err := strconv.ParseFloat(value, 64)
				Expect(err).NotTo(HaveOccurred(), "%s at %s: %q", target.deployment, addr, line)
				Expect(int64(got)).To(BeNumerically("~", want, 1<<20), "%s at %s: GOMEMLIMIT for a limit of %s", target.deployment, addr, limit.String())
			}
		}
	})

	It("rolls out a helm upgrade that changes every Deployment without a failed request", func() {
		// Token requests on a new connection each: every one is routed by kube-proxy
		// to an endpoint that is ready at that moment, so a failure means a pod took
		// traffic before it was ready or stopped before it left the Service. (Over
		// keep-alive connections a POST can fail today: see the pending spec below.)
		l := startLoad(4, 50*time.Millisecond, tokenTarget(freshConns, worker.TokenURL, worker), authzTarget(authzURL(tenantNS), readerKey))
		before := kubectl("get", "pods", "-n", systemNS, "-o", "jsonpath={.items[*].metadata.name}")
		helm("upgrade", "latchkey", chartDir, "--namespace", systemNS, "--reuse-values",
			`--set-json=manager.extraArgs=["--leader-elect-lease-duration=15s"]`,
			`--set-json=tokenserver.extraArgs=["--last-used-granularity=1h"]`,
			`--set-json=authz.extraArgs=["--last-used-granularity=1h"]`)
		waitAvailable(systemNS)
		after := kubectl("get", "pods", "-n", systemNS, "-o", "jsonpath={.items[*].metadata.name}")
		for _, old := range strings.Fields(before) {
			Expect(strings.Fields(after)).NotTo(ContainElement(old), "every pod was replaced")
		}
		for _, d := range []string{"manager", "tokenserver", "authz"} {
			Expect(kubectl("get", "deployment", "latchkey-"+d, "-n", systemNS, "-o", "jsonpath={.spec.template.spec.containers[0].args}")).
				To(Or(ContainSubstring("--last-used-granularity=1h"), ContainSubstring("--leader-elect-lease-duration=15s")))
		}
		ok, failures := l.stop("load during the rolling upgrade")
		Expect(failures).To(BeEmpty())
		Expect(ok).To(BeNumerically(">", 200))
	})

	It("fails over: new APIKeys Ready within the lease duration plus 5 s of deleting the leader", func() {
		// Right after the previous spec's upgrade the old leader may have released
		// the lease (holder "") and the new managers not yet taken it: they try
		// again every retry period. Wait for a running pod to lead.
		var leader string
		Eventually(func() bool {
			holder, err := kubectlErr("get", "lease", "manager.latchkey.dev", "-n", systemNS, "-o", "jsonpath={.spec.holderIdentity}")
			var found bool
			if leader, _, found = strings.Cut(holder, "_"); err != nil || !found {
				return false
			}
			pods, err := kubectlErr("get", "pods", "-n", systemNS, "-l", "app.kubernetes.io/component=manager", "-o", "jsonpath={.items[*].metadata.name}")
			return err == nil && slices.Contains(strings.Fields(pods), leader)
		}).Should(BeTrue(), "the lease's holder is a running manager pod, as <pod>_<id>")
		start := time.Now()
		kubectl("delete", "pod", leader, "-n", systemNS, "--wait=false")
		manifest := filepath.Join(workDir, "failover.yaml")
		Expect(os.WriteFile(manifest, []byte(`apiVersion: latchkey.dev/v1alpha1
kind: APIKey
metadata: {name: after-failover, namespace: `+tenantNS+`}
spec:
  scopes: [leads:read]
`), 0o600)).To(Succeed())
		kubectl("apply", "-f", manifest)
		within(start, 20*time.Second, "a new APIKey Ready after the leader's pod was deleted", func() bool {
			return kubectl("get", "apikey", "after-failover", "-n", tenantNS, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`) == "True"
		})
		// The old leader gives the lease up when it stops, which may come after it
		// has reconciled the key: wait for the handover itself.
		Eventually(func() string {
			return kubectl("get", "lease", "manager.latchkey.dev", "-n", systemNS, "-o", "jsonpath={.spec.holderIdentity}")
		}).ShouldNot(HavePrefix(leader + "_"))
		waitAvailable(systemNS)
	})

	It("loses no request when a token-server pod is deleted under load", func() {
		pods := strings.Fields(kubectl("get", "pods", "-n", systemNS, "-l", "app.kubernetes.io/component=tokenserver", "-o", "jsonpath={.items[*].metadata.name}"))
		Expect(pods).To(HaveLen(2))
		l := startLoad(4, 50*time.Millisecond, tokenTarget(freshConns, worker.TokenURL, worker))
		Eventually(func() int64 { return l.ok.Load() }).Should(BeNumerically(">", 20), "the load runs")
		kubectl("delete", "pod", pods[0], "-n", systemNS, "--wait=true", "--timeout=90s")
		waitAvailable(systemNS)
		ok, failures := l.stop("load while a token-server pod was deleted")
		Expect(failures).To(BeEmpty())
		Expect(ok).To(BeNumerically(">", 100))
	})

	// http.Server.Shutdown alone closes every idle keep-alive connection at once, and
	// a client whose next POST meets that close reads EOF (an HTTP client does not
	// send a POST again by itself): seen here once in about three rolling upgrades
	// before internal/serve drained connections first (Connection: close on every
	// answer, idle connections closed only after a second, then Shutdown).
	It("loses no token request over keep-alive connections when a token-server pod exits", func() {
		l := startLoad(4, 50*time.Millisecond, tokenTarget(httpc, worker.TokenURL, worker))
		Eventually(func() int64 { return l.ok.Load() }).Should(BeNumerically(">", 20), "the load runs")
		kubectl("rollout", "restart", "deployment/latchkey-tokenserver", "-n", systemNS)
		waitAvailable(systemNS)
		ok, failures := l.stop("keep-alive load while the token server restarted")
		Expect(failures).To(BeEmpty())
		Expect(ok).To(BeNumerically(">", 100))
	})

	It("keeps the CRDs, credentials and Secrets on helm uninstall, and adopts them on reinstall with no key changing", func() {
		before := snapshot(tenantNS)
		Expect(before).To(HaveKey("Secret/reader-apikey"))
		Expect(before).To(HaveKey("APIKey/reader"))
		helm("uninstall", "latchkey", "--namespace", systemNS, "--wait")
		Expect(kubectl("get", "deployments", "-n", systemNS, "-o", "name")).To(BeEmpty())
		for _, crd := range []string{"apikeys", "oauthclients", "apis", "oauthgrants"} {
			kubectl("get", "crd", crd+".latchkey.dev")
		}
		Expect(snapshot(tenantNS)).To(Equal(before), "every credential, hash and Secret stays")

		helm("install", "latchkey", chartDir, "--namespace", systemNS)
		waitAvailable(systemNS)
		manifest := filepath.Join(workDir, "reinstall.yaml")
		Expect(os.WriteFile(manifest, []byte(`apiVersion: latchkey.dev/v1alpha1
kind: APIKey
metadata: {name: after-reinstall, namespace: `+tenantNS+`}
spec:
  scopes: [leads:read]
`), 0o600)).To(Succeed())
		kubectl("apply", "-f", manifest)
		kubectl("wait", "--for=condition=Ready", "apikey/after-reinstall", "-n", tenantNS, "--timeout=60s")
		after := snapshot(tenantNS)
		delete(after, "APIKey/after-reinstall")
		delete(after, "Secret/after-reinstall-apikey")
		Expect(after).To(Equal(before), "the reinstalled manager adopted every credential and changed none")
		Eventually(func() int { status, _ := token(worker); return status }).Should(Equal(http.StatusOK), "the old client secret still works")
		Eventually(func() int { status, _ := authorize(authzURL(tenantNS), readerKey); return status }).Should(Equal(http.StatusOK), "the old API key still works")
	})
})
