//go:build chaos

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

const (
	// outage is how long kube-apiserver or etcd stays down: longer than the 15 s
	// the staleness gauge must reach, and than client-go's first backoff steps.
	outage = 20 * time.Second
	// writeTimeout is the token server's: the longest a response may take.
	writeTimeout = 10 * time.Second
	audience     = "https://orders.chaos.test"
	// overloadAlgorithm signs the overloaded token server's tokens: RS256, the
	// default and the most expensive (~0.8 ms of CPU a request, ~5 s for the
	// burst). Most of that backlog waits in the Go scheduler's run queue, where the
	// in-flight limit cannot see it; the server sheds it on scheduling latency
	// (--overload-scheduling-latency).
	overloadAlgorithm = "RS256"
)

// quick is the client of single requests: none may hang a spec.
var quick = &http.Client{Timeout: 2 * time.Second}

var _ = Describe("The token server, when the control plane fails", func() {
	It("serves from its caches while kube-apiserver is down, and resumes its watches by itself", func(ctx SpecContext) {
		l := startLoad()

		By("killing kube-apiserver, for 20s")
		restart := takeDown(env.KillAPIServer, env.StartAPIServer)
		Eventually(staleness("apikeys")).WithTimeout(outage).Should(BeNumerically(">", 15), "the cache ages while no watch reaches it")
		restarted := restart(ctx)

		By("checking that the watches resumed by themselves")
		// Freshness is judged by the gauge's time of last contact, not a small
		// value: an idle watch hears nothing until the next bookmark, up to a minute.
		for _, resource := range []string{"apikeys", "oauthclients"} {
			Eventually(lastContact(resource)).WithTimeout(5*time.Second).
				Should(BeTemporally(">", restarted), "the %s cache heard from the restarted API server", resource)
		}
		expectRevokedWithinASecond(ctx, "revoked-after-apiserver")
		l.expectAllRight()
	})

	It("serves from its caches while etcd is down, and resumes its watches by itself", func(ctx SpecContext) {
		// The API server stays up: its watch cache, and the token server's watches
		// on it, may or may not notice; either way the token server must not.
		l := startLoad()

		By("killing etcd, for 20s")
		restart := takeDown(env.KillEtcd, env.StartEtcd)
		restart(ctx)

		expectRevokedWithinASecond(ctx, "revoked-after-etcd")
		l.expectAllRight()
	})
})

var _ = Describe("The token server, overloaded", func() {
	It("answers every request correctly or sheds it with Retry-After, within its memory bound", func(ctx SpecContext) {
		const (
			connections     = 2000
			requestsPerConn = 3
			// maxRSS bounds the token server's peak resident memory (VmHWM). Idle, it
			// holds ~33 MiB; the burst took it to 115-155 MiB on a 2-core machine:
			// ~25 KiB per connection (a goroutine, 4 KiB read and write buffers, the
			// request) held live, and up to twice that again in garbage at
			// --gc-percent=200. 256 MiB leaves room for the timing of collections,
			// and fails when memory grows with queued requests or leaks.
			maxRSS = 256 << 20
		)
		raiseFileLimit(connections + 1024)
		srv := startTokenServer("tokenserver-overload", "http://"+freeAddr(), "--max-requests-in-flight=64", "--signing-algorithm="+overloadAlgorithm)
		DeferCleanup(srv.stop)
		Eventually(func() int { return httpStatus(srv.url + "/readyz") }).Should(Equal(http.StatusOK), "the token server becomes ready")
		keys, err := jwk.Fetch(ctx, srv.url+"/oauth2/jwks")
		Expect(err).NotTo(HaveOccurred())
		AddReportEntry("overload: token server RSS before (VmRSS)", mib(memory(srv.Cmd.Process.Pid, "VmRSS")))

		By(fmt.Sprintf("opening %d connections at once, %d requests each: mostly tokens, some introspection", connections, requestsPerConn))
		answers := make(chan answer, connections*(requestsPerConn+1))
		begin := make(chan struct{})
		var wg, opened sync.WaitGroup
		opened.Add(connections)
		for i := range connections {
			wg.Go(func() {
				// One connection per client, kept alive between its requests, and
				// opened before the burst (/healthz is not limited), so that the
				// requests of all 2,000 arrive at once.
				transport := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
				defer transport.CloseIdleConnections()
				c := &http.Client{Timeout: writeTimeout, Transport: transport}
				if status := statusWith(c, srv.url+"/healthz"); status != http.StatusOK {
					answers <- answer{err: fmt.Errorf("connecting: /healthz answered %d", status)}
				}
				opened.Done()
				<-begin
				for j := range requestsPerConn {
					if (i+j)%3 == 0 {
						answers <- introspect(c, srv.url, steadyKey)
					} else {
						answers <- requestToken(c, srv.url, worker)
					}
				}
			})
		}
		Eventually(whenDone(&opened)).WithTimeout(writeTimeout+10*time.Second).Should(BeClosed(), "every connection is open")
		started := time.Now()
		close(begin)
		// Each request ends by the client timeout at the latest.
		Eventually(whenDone(&wg)).WithTimeout(requestsPerConn*writeTimeout+10*time.Second).Should(BeClosed(), "no request hangs")
		AddReportEntry("overload: every answer in", time.Since(started).Round(time.Millisecond).String())
		close(answers)

		var served, shed int
		var wrong []string
		for a := range answers {
			switch {
			case a.err == nil && a.status == http.StatusOK && a.token != "":
				if _, err := jwt.Parse([]byte(a.token), jwt.WithKeySet(keys), jwt.WithIssuer(srv.url), jwt.WithAudience(audience)); err != nil {
					wrong = append(wrong, "a token that does not verify: "+err.Error())
					continue
				}
				served++
			case a.err == nil && a.status == http.StatusOK && a.active != nil && *a.active:
				served++
			case a.err == nil && (a.status == http.StatusServiceUnavailable && a.oauthError == "temporarily_unavailable" ||
				a.status == http.StatusTooManyRequests) && a.retryAfter != "":
				shed++
			default:
				wrong = append(wrong, a.String())
			}
		}
		AddReportEntry("overload: answers", fmt.Sprintf("%d served, %d shed, %d wrong", served, shed, len(wrong)))
		Expect(len(wrong)).To(BeZero(), "every answer is right, or a 503/429 with Retry-After; wrong: %s", firstFew(wrong))
		Expect(served).To(BeNumerically(">", 0))
		// How many are shed depends on the machine's speed; every one is counted.
		var rejected float64
		shedFor := map[string]float64{}
		for _, reason := range []string{"queue_full", "wait", "cpu", "canceled", "anonymous_budget"} {
			shedFor[reason], _ = metric(Default, srv, `latchkey_tokenserver_rejected_requests_total{reason="`+reason+`"}`)
			rejected += shedFor[reason]
		}
		AddReportEntry("overload: shed for", shedFor)
		Expect(rejected).To(BeNumerically("==", shed), "requests counted as rejected for overload")

		peak := memory(srv.Cmd.Process.Pid, "VmHWM")
		AddReportEntry("overload: token server peak RSS (VmHWM)", mib(peak))
		Expect(peak).To(BeNumerically("<", maxRSS), "peak RSS in bytes")
		Expect(srv.Running()).To(BeTrue())
	})
})

// takeDown kills a control-plane component under the running load and keeps it
// down for outage, checking that the token server stays up meanwhile. The
// returned function starts the component again once the outage is over, waits
// until the API server is ready, and returns when the restart began. If the spec
// fails first, the component is restarted for the next one.
func takeDown(kill, start func() error) (restart func(context.Context) time.Time) {
	up := false
	DeferCleanup(func() {
		if !up {
			Expect(start()).To(Succeed())
		}
	})
	Expect(kill()).To(Succeed())
	down := time.Now()
	return func(ctx context.Context) time.Time {
		Consistently(tokenSrv.Running).WithTimeout(time.Until(down.Add(outage))).Should(BeTrue(), "the token server keeps running")
		By("starting it again")
		restarted := time.Now()
		Expect(start()).To(Succeed())
		up = true
		clientset, err := kubernetes.NewForConfig(env.Config)
		Expect(err).NotTo(HaveOccurred())
		// Only a ready API server (CRDs served, etcd reachable) can deliver the watches.
		Eventually(func() error {
			return clientset.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
		}).Should(Succeed(), "the API server is ready again")
		return restarted
	}
}

// expectRevokedWithinASecond revokes the APIKey and the OAuthClient called name
// and checks that the token server refuses each within a second of the API server
// acknowledging the write: its watches deliver again.
func expectRevokedWithinASecond(ctx context.Context, name string) {
	By("revoking " + name + " and waiting at most a second for the token server to refuse it")
	key, c := secretValue(ctx, name+"-apikey", "api-key"), readClient(ctx, name)
	Expect(introspect(quick, tokenSrv.url, key).String()).To(Equal("200 active=true"), "the API key is accepted before")
	Expect(requestToken(quick, tokenSrv.url, c).String()).To(Equal("200 token"), "the client gets tokens before")
	revoked := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"revoked":true}}`))

	Expect(admin.Patch(ctx, &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, revoked)).To(Succeed())
	within(time.Second, "revoked API key refused by introspection", func() bool {
		return introspect(quick, tokenSrv.url, key).String() == "200 active=false"
	})
	Expect(admin.Patch(ctx, &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, revoked)).To(Succeed())
	within(time.Second, "revoked client refused by the token endpoint", func() bool {
		return requestToken(quick, tokenSrv.url, c).status == http.StatusUnauthorized
	})
}

// within fails unless cond holds within limit, and reports how long it took.
func within(limit time.Duration, what string, cond func() bool) {
	start := time.Now()
	EventuallyWithOffset(1, cond).WithTimeout(limit).WithPolling(10*time.Millisecond).Should(BeTrue(), what)
	AddReportEntry(what, time.Since(start).Round(time.Millisecond).String())
}

// load is what resource servers do all day: a few goroutines introspecting the
// steady API key and a JWT, paced, while /readyz is polled. It records every
// answer that is not "200, active" and every /readyz that is not 200.
type load struct {
	stop    context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	answers int
	wrong   []string
}

const (
	loadWorkers = 4
	loadPace    = 20 * time.Millisecond // per worker: 200 introspections a second in all
	loadTimeout = 5 * time.Second
)

func startLoad() *load {
	tok := requestToken(quick, tokenSrv.url, worker)
	Expect(tok.String()).To(Equal("200 token"))
	loadCtx, stop := context.WithCancel(context.Background())
	l := &load{stop: stop}
	DeferCleanup(l.end)
	httpc := &http.Client{Timeout: loadTimeout}
	started := time.Now()
	pace := func(each time.Duration, do func()) {
		tick := time.NewTicker(each)
		defer tick.Stop()
		for {
			do()
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
			}
		}
	}
	for i := range loadWorkers {
		what, token := "API key", steadyKey
		if i%2 == 1 {
			what, token = "JWT", tok.token
		}
		l.wg.Go(func() {
			pace(loadPace, func() {
				if a := introspect(httpc, tokenSrv.url, token); a.String() != "200 active=true" {
					l.record(fmt.Sprintf("%s introspection at +%s: %s", what, time.Since(started).Round(time.Millisecond), a))
				} else {
					l.record("")
				}
			})
		})
	}
	l.wg.Go(func() {
		pace(100*time.Millisecond, func() {
			if status := statusWith(httpc, tokenSrv.url+"/readyz"); status != http.StatusOK {
				l.record(fmt.Sprintf("/readyz at +%s: %d", time.Since(started).Round(time.Millisecond), status))
			}
		})
	})
	Eventually(func() int { l.mu.Lock(); defer l.mu.Unlock(); return l.answers }).Should(BeNumerically(">", 10), "the load runs")
	return l
}

func (l *load) record(wrong string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if wrong == "" {
		l.answers++
	} else {
		l.wrong = append(l.wrong, wrong)
	}
}

// end stops the load and waits for the requests in flight (bounded by loadTimeout).
func (l *load) end() {
	l.stop()
	l.wg.Wait()
}

// expectAllRight ends the load and checks that every answer was right: no 5xx,
// no transport error, the key and the token active throughout, always ready.
func (l *load) expectAllRight() {
	l.end()
	AddReportEntry("load: right answers", l.answers)
	Expect(len(l.wrong)).To(BeZero(), "every answer under load is 200 and active, and /readyz 200 (%d were); wrong: %s", l.answers, firstFew(l.wrong))
}

// whenDone is closed when wg is done.
func whenDone(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// firstFew lists the first ten of many failures, and says how many there are.
func firstFew(failures []string) string {
	if len(failures) > 10 {
		return fmt.Sprintf("%d, the first ten:\n%s", len(failures), strings.Join(failures[:10], "\n"))
	}
	return strings.Join(failures, "\n")
}

// oauthClient is an OAuthClient as its Secret describes it.
type oauthClient struct{ id, secret string }

func readClient(ctx context.Context, name string) oauthClient {
	return oauthClient{id: secretValue(ctx, name+"-oauthclient", "client_id"), secret: secretValue(ctx, name+"-oauthclient", "client_secret")}
}

// answer is one response of the token server. Its String never shows a
// credential, so that failure messages can print it.
type answer struct {
	err        error // no response: a transport error or the client's timeout
	status     int
	retryAfter string
	oauthError string // the error member of an error response
	active     *bool  // introspection responses
	token      string // token responses: the access token
}

func (a answer) String() string {
	if a.err != nil {
		return "no answer: " + a.err.Error()
	}
	s := strconv.Itoa(a.status)
	if a.oauthError != "" {
		s += " " + a.oauthError
	}
	if a.active != nil {
		s += fmt.Sprintf(" active=%t", *a.active)
	}
	if a.token != "" {
		s += " token"
	}
	if a.retryAfter != "" {
		s += " Retry-After=" + a.retryAfter
	}
	return s
}

// introspect asks the token server at base about token, as the resource server.
func introspect(c *http.Client, base, token string) answer {
	return post(c, base+"/oauth2/introspect", ordersAPI, url.Values{"token": {token}})
}

// requestToken is a client_credentials request of client.
func requestToken(c *http.Client, base string, client oauthClient) answer {
	return post(c, base+"/oauth2/token", client, url.Values{"grant_type": {"client_credentials"}})
}

func post(c *http.Client, endpoint string, as oauthClient, form url.Values) answer {
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(as.id), url.QueryEscape(as.secret))
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	var body struct {
		Active      *bool  `json:"active"`
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{err: err}
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		a.oauthError = "(a body that is not JSON)"
		return a
	}
	a.active, a.token, a.oauthError = body.Active, body.AccessToken, body.Error
	return a
}

func statusWith(c *http.Client, url string) int {
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// staleness reads the main token server's gauge of how old its cache of resource is.
func staleness(resource string) func(Gomega) float64 {
	return func(g Gomega) float64 {
		series := `latchkey_tokenserver_cache_staleness_seconds{resource="` + resource + `"}`
		seconds, found := metric(g, tokenSrv, series)
		g.Expect(found).To(BeTrue(), "/metrics has %s", series)
		return seconds
	}
}

// lastContact is when the main token server's cache of resource last heard from
// the API server (a list, a watch event or a bookmark), by its staleness gauge.
func lastContact(resource string) func(Gomega) time.Time {
	return func(g Gomega) time.Time {
		return time.Now().Add(-time.Duration(staleness(resource)(g) * float64(time.Second)))
	}
}

// metric scrapes one series, such as name{label="value"}, from srv's /metrics.
// A labelled counter is missing (found is false) until first counted.
func metric(g Gomega, srv *server, series string) (value float64, found bool) {
	resp, err := quick.Get("http://" + srv.metrics + "/metrics")
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	for _, line := range bytes.Split(body, []byte("\n")) {
		if text, ok := bytes.CutPrefix(line, []byte(series+" ")); ok {
			value, err := strconv.ParseFloat(string(text), 64)
			g.Expect(err).NotTo(HaveOccurred())
			return value, true
		}
	}
	return 0, false
}

// memory reads a field of /proc/<pid>/status, such as VmRSS (resident memory)
// or VmHWM (its high-water mark), in bytes.
func memory(pid int, field string) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if value, ok := strings.CutPrefix(lines.Text(), field+":"); ok {
			kib, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(value), "kB")), 10, 64)
			Expect(err).NotTo(HaveOccurred())
			return kib << 10
		}
	}
	Fail("no " + field + " in /proc/<pid>/status")
	return 0
}

func mib(bytes uint64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }

// raiseFileLimit makes room for n open files in this process, the client end of
// the overload's connections. Go already raises the soft limit to the hard one
// at start-up; this says so plainly when the hard limit is too low.
func raiseFileLimit(n uint64) {
	var limit syscall.Rlimit
	Expect(syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit)).To(Succeed())
	if limit.Cur < n && limit.Max >= n {
		limit.Cur = n
		Expect(syscall.Setrlimit(syscall.RLIMIT_NOFILE, &limit)).To(Succeed())
	}
	Expect(limit.Cur).To(BeNumerically(">=", n), "RLIMIT_NOFILE: raise the hard limit (ulimit -Hn)")
}
