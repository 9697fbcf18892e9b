package tokenserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
	"github.com/latchkey-dev/latchkey/internal/testenv"
	"github.com/latchkey-dev/latchkey/tokenserver"
	"github.com/latchkey-dev/latchkey/tokenserver/leaks"
)

// scanner is testenv's secret scanner with its key list served from a local
// server, whose fetches it counts.
type scanner struct {
	*testenv.SecretScanner
	keyID   string
	keys    *httptest.Server
	fetches atomic.Int64
}

func newScanner() *scanner {
	s, err := testenv.NewSecretScanner()
	Expect(err).NotTo(HaveOccurred())
	sc := &scanner{SecretScanner: s, keyID: s.KeyID}
	sc.keys = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		sc.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.KeyList)
	}))
	DeferCleanup(sc.keys.Close)
	return sc
}

// signature is the signature header's value for body.
func (sc *scanner) signature(body []byte) string {
	sig, err := sc.Sign(body)
	Expect(err).NotTo(HaveOccurred())
	return sig
}

type reportedToken struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

func report(tokens ...string) []byte {
	entries := make([]reportedToken, len(tokens))
	for i, t := range tokens {
		entries[i] = reportedToken{Token: t, Type: "latchkey_api_key", URL: fmt.Sprintf("https://github.com/acme/app/blob/main/config.%d.env", i), Source: "content"}
	}
	return mustJSONBytes(entries)
}

// postReport posts body to reporter's endpoint of s, with the signature headers.
func postReport(s *runningServer, reporter, headerPrefix, keyID, signature string, body []byte) response {
	req, err := http.NewRequest(http.MethodPost, s.URL+"/secret-scanning/"+reporter, bytes.NewReader(body))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(headerPrefix+"-Identifier", keyID)
	req.Header.Set(headerPrefix+"-Signature", signature)
	return do(req)
}

func (sc *scanner) send(s *runningServer, body []byte) response {
	return postReport(s, "github", "Github-Public-Key", sc.keyID, sc.signature(body), body)
}

func revokeRequest(s *runningServer, credentials ...string) response {
	body := mustJSONBytes(map[string]any{"credentials": credentials})
	req, err := http.NewRequest(http.MethodPost, s.URL+tokenserver.CredentialRevocationPath, bytes.NewReader(body))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	return do(req)
}

// counted is the value of the counter name{labels} in reg (0 when absent).
func counted(reg *prometheus.Registry, name string, labels map[string]string) float64 {
	families, err := reg.Gather()
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// credentialReads sums kube-apiserver's apiserver_request_total of GETs of APIKeys
// and OAuthClients: the recorder's read before it writes a report, which nothing
// else in the suite does (the manager reads from its cache).
func credentialReads() float64 {
	cs, err := kubernetes.NewForConfig(env.Config)
	Expect(err).NotTo(HaveOccurred())
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	var sum float64
	lines := bufio.NewScanner(bytes.NewReader(raw))
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		line := lines.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `verb="GET"`) ||
			!(strings.Contains(line, `resource="apikeys"`) || strings.Contains(line, `resource="oauthclients"`)) {
			continue
		}
		var v float64
		_, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
		sum += v
	}
	return sum
}

// leakRecords reads obj's status.leaks.
func leakRecords(obj credentialObject) []latchkeyv1.LeakRecord {
	ExpectWithOffset(1, k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	return obj.CredentialStatus().Leaks
}

// leakEvents are the manager's LeakReported Events about obj.
func leakEvents(obj client.Object) []eventsv1.Event {
	var list eventsv1.EventList
	ExpectWithOffset(1, k8s.List(context.Background(), &list, client.InNamespace(obj.GetNamespace()))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.UID == obj.GetUID() && e.Reason == latchkeyv1.ReasonLeakReported {
			out = append(out, e)
		}
	}
	return out
}

func randomKey() string {
	k, err := credential.NewAPIKey(rand.Reader, "lk", "live")
	Expect(err).NotTo(HaveOccurred())
	return k
}

var _ = Describe("Leaked credentials", Ordered, func() {
	var (
		sc, other *scanner
		ls        *runningServer
	)

	BeforeAll(func() {
		sc, other = newScanner(), newScanner()
		ls = startServerWith(tokenServerConfig, signingkeys.RS256, func(o *tokenserver.Options) {
			o.LeakReports = leaks.Options{Reporters: []leaks.Reporter{
				{Name: "github", KeysURL: sc.keys.URL, HeaderPrefix: "Github-Public-Key"},
				{Name: "depsdev", KeysURL: other.keys.URL, HeaderPrefix: "GOSST-PUBLIC-KEY", Feedback: true},
			}}
		}, true)
		DeferCleanup(ls.Stop)
	})

	// keyWithReader is a live API key and a resource server that may introspect it.
	keyWithReader := func(mutate func(*latchkeyv1.APIKey)) (*latchkeyv1.APIKey, string, testClient) {
		ns := newNamespace()
		obj, key := newAPIKey(ns, "partner", mutate)
		rs := newResourceServer(ns, "reader", nil)
		waitKnown(ls, rs)
		Eventually(func() bool { return ls.active(rs, key) }).Should(BeTrue())
		return obj, key, rs
	}

	It("revokes a key a scanner reports, at once, issues a new one, and says so in status, an Event and a metric", func() {
		obj, key, rs := keyWithReader(nil)
		waitKnown(server, rs)
		Eventually(func() bool { return server.active(rs, key) }).Should(BeTrue(), "another replica accepts the key before it is reported")
		body := report(key)
		resp := sc.send(ls, body)
		Expect(resp.StatusCode).To(Equal(http.StatusNoContent))
		Expect(len(resp.Body)).To(BeZero(), "the answer says nothing about what was found")
		// Every replica learns of the record from its own watch, the one that took
		// the report included: each refuses the key within the same bound.
		took := within(time.Second, "a reported key is refused at introspection, at every replica", func() bool {
			return !ls.active(rs, key) && !server.active(rs, key)
		})
		Expect(took).To(BeNumerically("<", time.Second))

		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
			leaked := meta.FindStatusCondition(obj.Status.Conditions, latchkeyv1.ConditionLeaked)
			g.Expect(leaked).NotTo(BeNil())
			g.Expect(leaked.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(leaked.Reason).To(Equal(latchkeyv1.ReasonLeakedKeyRevoked))
			g.Expect(leaked.Message).To(ContainSubstring("reported public by github"))
			g.Expect(leaked.Message).To(ContainSubstring("https://github.com/acme/app/blob/main/config.0.env"))
			g.Expect(obj.Status.Leaks).To(HaveLen(1))
			g.Expect(obj.Status.Leaks[0].Outcome).To(Equal(latchkeyv1.LeakOutcomeRevoked))
			g.Expect(obj.Status.Leaks[0].Hash).To(Equal(credential.Hash(key)))
			g.Expect(obj.Status.Leaks[0].Source).To(Equal("content"))
			g.Expect(meta.IsStatusConditionTrue(obj.Status.Conditions, latchkeyv1.ConditionReady)).To(BeTrue())
		}).Should(Succeed())
		Eventually(func() []eventsv1.Event { return leakEvents(obj) }).Should(ContainElement(And(
			HaveField("Type", corev1.EventTypeWarning),
			HaveField("Note", ContainSubstring("a new API key is issued into Secret "+obj.SecretName())))))
		Expect(strings.Contains(leakEvents(obj)[0].Note, key)).To(BeFalse(), "the Event names the plaintext key")

		var replacement string
		Eventually(func() string {
			replacement = apiKeyIn(obj.Namespace, obj.SecretName())
			return credential.Hash(replacement)
		}).ShouldNot(Equal(credential.Hash(key)), "the Secret gets a new key")
		Eventually(func() bool { return ls.active(rs, replacement) }).Should(BeTrue(), "the new key works")
		Expect(counted(ls.Registry, "latchkey_tokenserver_leak_reported_tokens_total", map[string]string{"reporter": "github", "result": "recorded"})).To(Equal(1.0))
		Expect(counted(ls.Registry, "latchkey_tokenserver_leak_records_total", map[string]string{"result": "written"})).To(Equal(1.0))
	})

	It("writes one record per key, and with leakResponse flag only says so: the key keeps working", func() {
		obj, key, rs := keyWithReader(func(k *latchkeyv1.APIKey) { k.Spec.LeakResponse = latchkeyv1.LeakResponseFlag })
		body := report(key)
		sig := sc.signature(body)
		before := counted(ls.Registry, "latchkey_tokenserver_leak_records_total", nil)
		for range 3 { // a replayed report: the same body and signature
			Expect(postReport(ls, "github", "Github-Public-Key", sc.keyID, sig, body).StatusCode).To(Equal(http.StatusNoContent))
		}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
			g.Expect(obj.Status.Leaks).To(ConsistOf(HaveField("Outcome", latchkeyv1.LeakOutcomeFlagged)))
			leaked := meta.FindStatusCondition(obj.Status.Conditions, latchkeyv1.ConditionLeaked)
			g.Expect(leaked).NotTo(BeNil())
			g.Expect(leaked.Reason).To(Equal(latchkeyv1.ReasonLeakedKeyAccepted))
			g.Expect(leaked.Message).To(ContainSubstring("still accepted"))
		}).Should(Succeed())
		Eventually(func() []eventsv1.Event { return leakEvents(obj) }).Should(ConsistOf(HaveField("Note", ContainSubstring("spec.leakResponse: flag"))))
		Expect(counted(ls.Registry, "latchkey_tokenserver_leak_records_total", nil)-before).To(Equal(1.0), "one write for three reports")
		Expect(sc.send(ls, body).StatusCode).To(Equal(http.StatusNoContent))
		Expect(counted(ls.Registry, "latchkey_tokenserver_leak_records_total", nil)-before).To(Equal(1.0), "a key reported before is known from the index")
		Expect(leakRecords(obj)).To(HaveLen(1))
		Expect(ls.active(rs, key)).To(BeTrue(), "a flagged key keeps working")
		Expect(credential.Hash(apiKeyIn(obj.Namespace, obj.SecretName()))).To(Equal(credential.Hash(key)), "a flagged key stays in the Secret")
	})

	It("refuses a report whose signature does not verify, and it changes nothing (attacker)", func() {
		obj, key, rs := keyWithReader(nil)
		body := report(key)
		forged := other.signature(body) // a real signature, by a key that is not the reporter's
		expectOAuthError(postReport(ls, "github", "Github-Public-Key", sc.keyID, forged, body), http.StatusBadRequest, "invalid_signature")
		tampered := report(key, randomKey())
		expectOAuthError(postReport(ls, "github", "Github-Public-Key", sc.keyID, sc.signature(body), tampered), http.StatusBadRequest, "invalid_signature")
		expectOAuthError(postReport(ls, "github", "Github-Public-Key", sc.keyID, "", body), http.StatusBadRequest, "invalid_signature")
		expectOAuthError(postReport(ls, "github", "Github-Public-Key", sc.keyID, "not base64!", body), http.StatusBadRequest, "invalid_signature")
		expectOAuthError(postReport(ls, "github", "GOSST-PUBLIC-KEY", sc.keyID, sc.signature(body), body), http.StatusBadRequest, "invalid_signature")
		Expect(postReport(ls, "gitlab", "Github-Public-Key", sc.keyID, sc.signature(body), body).StatusCode).To(Equal(http.StatusNotFound))
		notJSON := []byte(key)
		expectOAuthError(postReport(ls, "github", "Github-Public-Key", sc.keyID, sc.signature(notJSON), notJSON), http.StatusBadRequest, "invalid_request")
		Expect(postReport(server, "github", "Github-Public-Key", sc.keyID, sc.signature(body), body).StatusCode).To(Equal(http.StatusNotFound),
			"a server with no reporter configured has no such endpoint")

		// Records are written in the order reports are accepted: once an honest
		// report that came after them is recorded, the refused ones never will be.
		marker, markerKey, _ := keyWithReader(nil)
		Expect(sc.send(ls, report(markerKey)).StatusCode).To(Equal(http.StatusNoContent))
		Eventually(func() []latchkeyv1.LeakRecord { return leakRecords(marker) }).Should(HaveLen(1))
		Expect(leakRecords(obj)).To(BeEmpty())
		Expect(ls.active(rs, key)).To(BeTrue())
		Expect(leakEvents(obj)).To(BeEmpty())
	})

	It("fetches the keys again for an unknown key identifier, at most once a minute whoever sends them", func() {
		_, key, _ := keyWithReader(nil)
		body := report(key)
		sig := other.signature(body)
		Expect(other.fetches.Load()).To(BeZero(), "keys are fetched at the first report")
		for i := range 5 {
			expectOAuthError(postReport(ls, "depsdev", "GOSST-PUBLIC-KEY", fmt.Sprintf("unknown-%d", i), sig, body), http.StatusBadRequest, "invalid_signature")
		}
		Expect(other.fetches.Load()).To(Equal(int64(1)), "five unknown identifiers, one fetch")
		resp := postReport(ls, "depsdev", "GOSST-PUBLIC-KEY", other.keyID, sig, body)
		Expect(resp.StatusCode).To(Equal(http.StatusOK), "a reporter with feedback is answered 200")
		Expect(other.fetches.Load()).To(Equal(int64(1)), "the key known since the fetch")
	})

	It("answers a reporter configured for feedback with each token's verdict, by hash", func() {
		_, key, _ := keyWithReader(nil)
		stranger, malformed := randomKey(), "lk_live_nope"
		body := report(key, stranger, malformed)
		resp := postReport(ls, "depsdev", "GOSST-PUBLIC-KEY", other.keyID, other.signature(body), body)
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
		var answer []map[string]string
		Expect(json.Unmarshal(resp.Body, &answer)).To(Succeed())
		hash := func(t string) string { sum := sha256.Sum256([]byte(t)); return hex.EncodeToString(sum[:]) }
		Expect(answer).To(Equal([]map[string]string{
			{"token_hash": hash(key), "token_type": "latchkey_api_key", "label": "true_positive"},
			{"token_hash": hash(stranger), "token_type": "latchkey_api_key", "label": "false_positive"},
			{"token_hash": hash(malformed), "token_type": "latchkey_api_key", "label": "false_positive"},
		}))
		Expect(strings.Contains(string(resp.Body), key)).To(BeFalse(), "the answer names the plaintext key")
	})

	It("finds the three live keys of a report of 1,000 tokens, and looks up no other", func() {
		first, firstKey, rs := keyWithReader(nil)
		live, tokens := []*latchkeyv1.APIKey{first}, []string{firstKey}
		for _, name := range []string{"second", "third"} {
			obj, key := newAPIKey(first.Namespace, name, nil)
			Eventually(func() bool { return ls.active(rs, key) }).Should(BeTrue())
			live, tokens = append(live, obj), append(tokens, key)
		}
		for i := 0; len(tokens) < 1000; i++ {
			k := randomKey()
			switch i % 4 {
			case 0, 1: // well-formed: a checksum that holds, and no such key
			case 2: // a checksum that does not hold
				k = k[:len(k)-1] + flip(k[len(k)-1])
			case 3: // not a key at all
				k = "ghp_" + k
			}
			tokens = append(tokens, k)
		}
		labels := func(result string) map[string]string {
			return map[string]string{"reporter": "github", "result": result}
		}
		recorded, notAccepted, malformed := counted(ls.Registry, "latchkey_tokenserver_leak_reported_tokens_total", labels("recorded")),
			counted(ls.Registry, "latchkey_tokenserver_leak_reported_tokens_total", labels("not_accepted")),
			counted(ls.Registry, "latchkey_tokenserver_leak_reported_tokens_total", labels("malformed"))
		Expect(sc.send(ls, report(tokens...)).StatusCode).To(Equal(http.StatusNoContent))
		for _, obj := range live {
			Eventually(func() []latchkeyv1.LeakRecord { return leakRecords(obj) }).Should(HaveLen(1))
		}
		Expect(counted(ls.Registry, "latchkey_tokenserver_leak_reported_tokens_total", labels("recorded")) - recorded).To(Equal(3.0))
		Expect(counted(ls.Registry, "latchkey_tokenserver_leak_reported_tokens_total", labels("not_accepted")) - notAccepted).To(Equal(499.0))
		Expect(counted(ls.Registry, "latchkey_tokenserver_leak_reported_tokens_total", labels("malformed")) - malformed).To(Equal(498.0))
	})

	It("revokes a key with the key alone, answering 204 whatever the body names", func() {
		obj, key, rs := keyWithReader(nil)
		resp := revokeRequest(ls, randomKey(), "not a key", key)
		Expect(resp.StatusCode).To(Equal(http.StatusNoContent))
		within(time.Second, "a self-revoked key is refused", func() bool { return !ls.active(rs, key) })
		Eventually(func() []latchkeyv1.LeakRecord { return leakRecords(obj) }).Should(ConsistOf(And(
			HaveField("Reporter", latchkeyv1.ReporterSelf), HaveField("URL", ""), HaveField("Outcome", latchkeyv1.LeakOutcomeRevoked))))
		Expect(revokeRequest(ls, randomKey()).StatusCode).To(Equal(http.StatusNoContent), "a stranger's key: the same answer")

		expectOAuthError(revokeRequest(ls), http.StatusBadRequest, "invalid_request")
		tooMany := make([]string, leaks.MaxRevokeCredentials+1)
		for i := range tooMany {
			tooMany[i] = "x"
		}
		expectOAuthError(revokeRequest(ls, tooMany...), http.StatusBadRequest, "invalid_request")
		req, err := http.NewRequest(http.MethodPost, ls.URL+tokenserver.CredentialRevocationPath, strings.NewReader(`{"credentials": "`+key+`"}`))
		Expect(err).NotTo(HaveOccurred())
		expectOAuthError(do(req), http.StatusBadRequest, "invalid_request")
		huge := bytes.Repeat([]byte("a"), leaks.MaxRevokeBytes+1)
		req, err = http.NewRequest(http.MethodPost, ls.URL+tokenserver.CredentialRevocationPath, bytes.NewReader(huge))
		Expect(err).NotTo(HaveOccurred())
		expectOAuthError(do(req), http.StatusRequestEntityTooLarge, "invalid_request")
	})

	It("revokes an OAuth client's secret reported with its client_id, and issues a new one", func() {
		c := newClient(newNamespace(), "leaky", nil)
		waitKnown(ls, c)
		Expect(ls.token(c, nil).StatusCode).To(Equal(http.StatusOK))
		Expect(revokeRequest(ls, c.ClientSecret).StatusCode).To(Equal(http.StatusNoContent))
		Expect(revokeRequest(ls, c.ClientID+":"+c.ClientSecret).StatusCode).To(Equal(http.StatusNoContent))
		within(time.Second, "a client secret reported with its client_id is refused", func() bool {
			return ls.token(c, nil).StatusCode == http.StatusUnauthorized
		})
		Eventually(func(g Gomega) {
			obj := c.Object
			g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
			g.Expect(obj.Status.Leaks).To(ConsistOf(HaveField("Hash", credential.Hash(c.ClientSecret))))
			g.Expect(meta.FindStatusCondition(obj.Status.Conditions, latchkeyv1.ConditionLeaked)).To(HaveField("Reason", latchkeyv1.ReasonLeakedKeyRevoked))
		}).Should(Succeed())
		var fresh testClient
		Eventually(func() string { fresh = readClientSecret(c.Object); return credential.Hash(fresh.ClientSecret) }).ShouldNot(Equal(credential.Hash(c.ClientSecret)))
		Expect(fresh.ClientID).To(Equal(c.ClientID))
		waitKnown(ls, fresh)
		Eventually(func() int { return ls.token(fresh, nil).StatusCode }).Should(Equal(http.StatusOK))
	})

	It("revokes a key in its grace period alone: the current key and the Secret stay", func() {
		obj, old, rs := keyWithReader(nil) // the default grace period: an hour
		mergePatch(obj, func(k *latchkeyv1.APIKey) {
			k.Annotations = map[string]string{latchkeyv1.RotateAnnotation: "leak-spec"}
		})
		var current string
		Eventually(func() string { current = apiKeyIn(obj.Namespace, obj.SecretName()); return credential.Hash(current) }).ShouldNot(Equal(credential.Hash(old)))
		Eventually(func() bool { return ls.active(rs, current) }).Should(BeTrue())
		Expect(ls.active(rs, old)).To(BeTrue(), "the old key is in its grace period")
		Expect(revokeRequest(ls, old).StatusCode).To(Equal(http.StatusNoContent))
		within(time.Second, "the reported old key is refused", func() bool { return !ls.active(rs, old) })
		Eventually(func() []latchkeyv1.LeakRecord { return leakRecords(obj) }).Should(ConsistOf(HaveField("Outcome", latchkeyv1.LeakOutcomeRevoked)))
		Expect(obj.Status.Credentials).To(HaveLen(1))
		Expect(ls.active(rs, current)).To(BeTrue(), "the current key is not the one reported")
		Expect(credential.Hash(apiKeyIn(obj.Namespace, obj.SecretName()))).To(Equal(credential.Hash(current)), "the Secret keeps the current key")
		Eventually(func() []eventsv1.Event { return leakEvents(obj) }).Should(ConsistOf(HaveField("Note", Not(ContainSubstring("a new API key")))))
	})

	It("costs no API call for a flood of well-formed tokens that are not live keys (attacker)", func() {
		reads := credentialReads()
		recorded := counted(ls.Registry, "latchkey_tokenserver_leak_records_total", nil)
		start := time.Now()
		for range 20 {
			batch := make([]string, leaks.MaxRevokeCredentials)
			for i := range batch {
				batch[i] = randomKey()
			}
			Expect(revokeRequest(ls, batch...).StatusCode).To(Equal(http.StatusNoContent))
			body := report(batch[:500]...)
			Expect(sc.send(ls, body).StatusCode).To(Equal(http.StatusNoContent))
		}
		AddReportEntry("30,000 made-up tokens checked in", time.Since(start).String())
		Expect(time.Since(start)).To(BeNumerically("<", 20*time.Second))
		Expect(credentialReads()).To(Equal(reads), "no GET of an APIKey or an OAuthClient")
		Expect(counted(ls.Registry, "latchkey_tokenserver_leak_records_total", nil)).To(Equal(recorded))
	})

	It("lets the token server's identity add a report of an accepted credential and nothing else (attacker)", func() {
		obj, key, _ := keyWithReader(nil)
		asTokenServer, err := client.New(tokenServerConfig, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		patch := func(leaks string) error {
			return asTokenServer.Status().Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, []byte(`{"status":{"leaks":`+leaks+`}}`)))
		}
		record := func(hash, outcome string) string {
			r := map[string]any{"hash": hash, "reportedAt": "2026-12-05T10:00:00Z", "reporter": "github"}
			if outcome != "" {
				r["outcome"] = outcome
			}
			return string(mustJSONBytes(r))
		}
		chosen := credential.Hash(randomKey())
		Expect(patch("["+record(chosen, "")+"]")).To(MatchError(ContainSubstring("may only add to status.leaks reports of a credential")),
			"a hash the object does not accept")
		Expect(patch("["+record(credential.Hash(key), string(latchkeyv1.LeakOutcomeFlagged))+"]")).To(MatchError(ContainSubstring("may only add")),
			"an outcome: the manager's to write")
		// Reports as the manager acts on them are the manager's, never the token server's to erase.
		Expect(revokeRequest(ls, key).StatusCode).To(Equal(http.StatusNoContent))
		Eventually(func() []latchkeyv1.LeakRecord { return leakRecords(obj) }).Should(ConsistOf(HaveField("Outcome", latchkeyv1.LeakOutcomeRevoked)))
		Expect(patch("null")).To(MatchError(ContainSubstring("may only add")), "removing a report")

		By("the authorizer, which may patch status for last use, may not add a report")
		authzConfig, err := env.BindClusterRole(context.Background(), k8s, "latchkey-authz-under-test",
			filepath.Join("..", "config", "authz", "rbac", "rbac.yaml"))
		Expect(err).NotTo(HaveOccurred())
		asAuthz, err := client.New(authzConfig, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		other, otherKey, _ := keyWithReader(nil)
		Expect(asAuthz.Status().Patch(context.Background(), other, client.RawPatch(types.MergePatchType,
			[]byte(`{"status":{"leaks":[`+record(credential.Hash(otherKey), "")+`]}}`)))).
			To(MatchError(ContainSubstring("only a leak reporter (the Latchkey token server) may change status.leaks")))

		tenant := newTenant()
		Expect(tenant.Client.Status().Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, []byte(`{"status":{"leaks":null}}`)))).
			To(Satisfy(apierrors.IsForbidden), "another tenant cannot touch it")
	})
})
