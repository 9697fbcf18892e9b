//go:build e2e

package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The edge against hostile clients, through real proxies: a client of the victim's
// API (a read-only key) and mallory, a tenant with a permissive API of her own, try
// to choose which rules apply to their requests with what every client can send —
// its own query and its own header spellings — through Caddy and nginx configured
// as the README says, in every form a user would write: the API found by Host, and
// named in the auth URL's path.
const (
	victimNS    = "e2e-victim"
	victimAPI   = victimNS + "/leads"
	victimHost  = "leads.victim.e2e"
	mallorysAPI = "e2e-mallory/m"
)

var _ = Describe("The edge against hostile clients", Label("authz"), Ordered, func() {
	var (
		up                     *upstream
		readerKey, mallorysKey string
		proxies                map[string]*edge // by name: caddy-host, caddy-named, nginx-host, nginx-named
		caddyLegacy            *edge
	)

	BeforeAll(func() {
		By("declaring the victim's API, mallory's, and a key for each")
		kubectl("apply", "--server-side", "-k", filepath.Join(root, "config", "authz", "local"))
		kubectl("wait", "--for", "condition=established", "--timeout=60s", "crd/apis.latchkey.dev")
		kubectl("apply", "--server-side", "-f", filepath.Join("testdata", "hostile.yaml"))
		kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", victimNS, "apikey/reader")
		kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", "e2e-mallory", "apikey/mine")
		readerKey = secretValue(victimNS, "reader-apikey", "api-key")
		mallorysKey = secretValue("e2e-mallory", "mine-apikey", "api-key")

		authzAddr := startAuthzProcess("authz-hostile")
		up = startUpstream()
		DeferCleanup(up.close)

		By("starting Caddy three ways: by Host (`uri /authz`), the API named in the path, and the old query form")
		ports := map[string]string{"HostPort": freePort(), "NamedPort": freePort(), "LegacyPort": freePort()}
		caddyfile := renderTemplate("Caddyfile.hostile.tmpl", "Caddyfile.hostile", map[string]string{
			"Authz": authzAddr, "Upstream": up.addr, "Host": victimHost, "API": victimAPI,
			"Storage":  filepath.Join(workDir, "caddy-hostile-data"),
			"HostPort": ports["HostPort"], "NamedPort": ports["NamedPort"], "LegacyPort": ports["LegacyPort"],
		})
		caddy := startProcess("caddy-hostile", "", caddyBin, "run", "--adapter", "caddyfile", "--config", caddyfile)
		DeferCleanup(func() { caddy.stop() })

		By("starting nginx (Debian's, hack/nginx.sh) two ways: by Host (/authz/nginx) and the API named in the path")
		nginxBin, err := exec.LookPath(envOr("NGINX", "nginx"))
		Expect(err).NotTo(HaveOccurred(), "nginx is not installed: run `make nginx` (hack/nginx.sh; CI=true installs Debian's nginx)")
		nginxDir := filepath.Join(workDir, "nginx")
		Expect(os.MkdirAll(nginxDir, 0o755)).To(Succeed())
		nginxHostPort, nginxNamedPort := freePort(), freePort()
		conf := renderTemplate("nginx.conf.tmpl", "nginx.conf", map[string]any{
			"Dir": nginxDir, "Authz": authzAddr, "Upstream": up.addr, "Host": victimHost,
			"Servers": []map[string]string{
				{"Port": nginxHostPort, "AuthPath": "/authz/nginx"},
				{"Port": nginxNamedPort, "AuthPath": "/authz/nginx/api/" + victimAPI},
			},
		})
		nginx := startProcess("nginx", "", nginxBin, "-p", nginxDir, "-c", conf, "-e", filepath.Join(nginxDir, "nginx-error.log"))
		DeferCleanup(func() { nginx.stop() })

		at := func(port string) *edge {
			return &edge{proxy: "http://127.0.0.1:" + port, host: victimHost + ":" + port, up: up}
		}
		proxies = map[string]*edge{
			"caddy-host": at(ports["HostPort"]), "caddy-named": at(ports["NamedPort"]),
			"nginx-host": at(nginxHostPort), "nginx-named": at(nginxNamedPort),
		}
		caddyLegacy = at(ports["LegacyPort"])
		for name, e := range proxies {
			var r reply
			// The APIs reach the authorizer's index through its watch: poll, briefly.
			Eventually(func() int { r = e.do(http.MethodGet, "/v1/leads", readerKey, nil); return r.Status }).
				WithTimeout(20*time.Second).Should(Equal(http.StatusOK), "%s serves the reader: %s", name, r.String())
			Expect(r.Upstream.Header.Values("X-Latchkey-Api")).To(Equal([]string{victimAPI}), name)
		}
		Eventually(func() int { return proxies["caddy-named"].do(http.MethodGet, "/", mallorysKey, nil).Status }).
			ShouldNot(Equal(0))
	})

	It("keeps a read-only key from writing with ?scope= of its own, through every proxy", func() {
		for name, e := range proxies {
			for _, query := range []string{"?scope=", "?scope=leads:read", "?scope=&api=" + victimAPI} {
				r := e.do(http.MethodPost, "/v1/leads"+query, readerKey, nil)
				Expect(r.Status).To(Equal(http.StatusForbidden), "%s, POST /v1/leads%s: %s", name, query, r.String())
				Expect(r.Upstream).To(BeNil(), "%s called the upstream", name)
			}
		}
	})

	It("keeps mallory from applying her own API to the victim's host with ?api=, through every proxy", func() {
		for name, e := range proxies {
			for _, path := range []string{"/v1/leads?api=" + mallorysAPI, "/v1/leads?api=" + mallorysAPI + "&scope="} {
				r := e.do(http.MethodGet, path, mallorysKey, nil)
				Expect(r.Status).To(BeElementOf(http.StatusUnauthorized, http.StatusForbidden), "%s, GET %s: %s", name, path, r.String())
				Expect(r.Upstream).To(BeNil(), "%s let mallory's identity reach the victim's upstream", name)
			}
		}
	})

	It("never lets an identity header under another spelling reach the upstream, through every proxy", func() {
		imitates := func(name string) bool {
			return strings.Contains(name, "_") && strings.HasPrefix(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "x-latchkey-")
		}
		for name, e := range proxies {
			for _, forged := range []string{"X_Latchkey_Client_Id", "X_Latchkey_Subject"} {
				r := e.do(http.MethodGet, "/v1/leads", readerKey, map[string]string{forged: "victim"})
				if r.Upstream != nil {
					for got := range r.Upstream.Header {
						Expect(imitates(got)).To(BeFalse(), "%s forwarded %s", name, got)
					}
				}
				if strings.HasPrefix(name, "nginx") {
					// nginx with underscores_in_headers passes the header on, to the
					// authorizer as to the upstream: the authorizer refuses the request.
					Expect(r.Status).To(Equal(http.StatusUnauthorized), "%s with %s: %s", name, forged, r.String())
					Expect(r.Upstream).To(BeNil())
				} else {
					// Caddy drops such a header before the authorizer and the upstream
					// see it: the request goes through as the reader's, without it.
					Expect(r.Status).To(Equal(http.StatusOK), "%s with %s: %s", name, forged, r.String())
				}
			}
		}
	})

	It("fails closed for a Caddyfile written in the old query form", func() {
		r := caddyLegacy.do(http.MethodGet, "/v1/leads", readerKey, nil)
		Expect(r.Status).To(Equal(http.StatusForbidden), r.String())
		Expect(r.JSON().Description).To(ContainSubstring("/authz[/nginx][/api/<namespace>/<name>]"))
		Expect(r.Upstream).To(BeNil())
	})
})

// startAuthzProcess starts the authorizer (logging to name.log) as its
// ServiceAccount on an HTTP port only, and returns that address once it is ready.
func startAuthzProcess(name string) string {
	addr := freeAddr()
	p := startProcess(name, authzKubeconfig(), filepath.Join(binDir, "latchkey"),
		"authz", "--http-bind-address="+addr, "--grpc-bind-address=0", "--metrics-bind-address=0",
		"--issuer-url="+issuer, "--jwks-namespace=latchkey-system", "--last-used-flush-interval=1s")
	DeferCleanup(func() { p.stop() })
	waitServing(p, func() bool { return httpStatus("http://"+addr+"/readyz") == http.StatusOK },
		"the authorizer becomes ready (caches synced)")
	return addr
}

// renderTemplate fills testdata/<name> in and writes it to the work directory as out.
func renderTemplate(name, out string, values any) string {
	tmpl, err := template.ParseFiles(filepath.Join("testdata", name))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	tmpl.Option("missingkey=error")
	var b strings.Builder
	ExpectWithOffset(1, tmpl.Execute(&b, values)).To(Succeed())
	path := filepath.Join(workDir, out)
	ExpectWithOffset(1, os.WriteFile(path, []byte(b.String()), 0o600)).To(Succeed())
	return path
}

// freePort is a free loopback port.
func freePort() string {
	_, port, _ := strings.Cut(freeAddr(), ":")
	return port
}
