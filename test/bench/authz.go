package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/authz"
	"github.com/latchkey-dev/latchkey/internal/serve"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

// The edge authorizer (`latchkey authz`), measured as the token server is: a
// process pinned to the server core (taskset, GOMAXPROCS=1), watching the same
// control plane and APIKeys, loaded from the load core. One API, bench/leads,
// requires leads:read on GET /v1/leads. Each figure has its reference on the same
// core in the same run:
//   - forward-auth (GET /authz/api/bench/leads with X-Forwarded-*, as Caddy and
//     Traefik ask) with API keys, beside the same process's GET /healthz;
//   - gRPC Check (Envoy ext_authz, with the envoy protos' client) with API keys,
//     beside a no-op Check server the benchmark runs with the authorizer's gRPC
//     limits, written as any go-control-plane server is (the generated service,
//     gRPC's proto codec) (`bench grpc-noop`), answering the same requests;
//   - gRPC Check with ES256 and EdDSA access tokens from the token server, beside
//     the raw verification rate of that algorithm (`bench verify`);
//   - revocation: from an APIKey's revocation to the first 401 at forward-auth,
//     with the manager, the token server and the authorizer running.

const (
	apiName       = "leads"
	apiHost       = "api.bench.example"
	apiIdentifier = "https://api.bench.example" // the load clients' audience: their tokens are for this API
	apiPath       = "/v1/leads?limit=50"
	authzUser     = "latchkey-authz"

	targetAuthzRatio = 0.60
	targetAuthzP99   = 2 * time.Millisecond
)

// jwtAlgorithms are the token algorithms the gRPC Check is measured with.
var jwtAlgorithms = []string{signingkeys.ES256, signingkeys.EdDSA}

// authzRun holds the authorizer's figures; each load with how busy the measured
// process kept its core (a figure near 100% says the server, not the load, was the limit).
type authzRun struct {
	identity         string // the user the authorizer ran as
	keys, cycled     int    // APIKeys in the index; live keys the loads cycle through
	healthz, forward loadResult
	// forwardFloor: the forward-auth requests at the authorizer's no-op floor
	// (shapes.go), alone; forwardPaired: forward interleaved with it (its Floor),
	// the pair the ratio is of.
	forwardFloor, forwardPaired loadResult
	// noop and grpcKey: the no-op Check server's load and the API-key Checks,
	// each alone; grpcKeyPaired: grpcKey interleaved with the no-op (its Floor).
	noop, grpcKey, grpcKeyPaired loadResult
	// before: the loads measured again on the -before build, by load name;
	// forwardBeforePair and grpcBeforePair: forward and grpcKey interleaved with
	// the -before build's (their Floor).
	before                            map[string]loadResult
	forwardBeforePair, grpcBeforePair *loadResult
	// forwardTogether: forward on a fresh authorizer together with its floor on
	// another (its Floor); forwardTogetherAA: forward on both (togetherLoad).
	forwardTogether, forwardTogetherAA *loadResult
	// forwardTogetherBefore: forward on a fresh authorizer together with the
	// -before build's (its Floor), both answering it.
	forwardTogetherBefore *loadResult
	// limited: the forward checks on a twin of the API with a rate limit that no
	// request reaches, alone (profiled); limitedPaired: interleaved with forward
	// (its Floor); limitedTogether: on a fresh authorizer together with forward
	// on another (its Floor), judged by forwardTogetherAA (headlineRatio).
	limited                        loadResult
	limitedPaired, limitedTogether *loadResult
	shared                         *sharedLimitRun
	jwt                            []jwtRun
	// revocations: from each patch's response to the first 401 (the target's
	// measure); revocationsFromSend: from sending it, as the token server's rows.
	revocations, revocationsFromSend []time.Duration
}

type jwtRun struct {
	alg    string
	verify verifyResult
	// load is the authorizer as shipped: each token's signature is verified once,
	// then remembered (--token-cache-size); uncached verifies it on every check
	// (--token-cache-size=0), the cost of a token seen for the first time.
	load, uncached loadResult
}

// edgeAuthz runs the measurements above.
func (b *bench) edgeAuthz(ctx context.Context) error {
	run := &authzRun{keys: b.s.keys}
	reconciles := sample{name: "controller_runtime_reconcile_total"}
	before, err := scrape(ctx, http.DefaultClient, b.c.managerURL, reconciles)
	if err != nil {
		return err
	}
	if err := b.createAPI(ctx); err != nil {
		return err
	}
	// The namespace's first API moves every credential there from NoCatalogue to
	// a ScopesKnown verdict: the manager writes each one's status. At 10,000 keys
	// that kept kube-apiserver busy for 90 s, and the revocations below were
	// measured in it (p50 4.6 ms from the patch's answer; 1.4 ms once it was idle).
	waited, err := b.c.waitManagerIdle(ctx, 5*time.Minute)
	if err != nil {
		return fmt.Errorf("after creating the API: %w", err)
	}
	after, err := scrape(ctx, http.DefaultClient, b.c.managerURL, reconciles)
	if err != nil {
		return err
	}
	logf("  the API's catalogue: the manager ran %.0f reconciles and was idle again %s later",
		after[0].value-before[0].value, waited.Round(100*time.Millisecond))
	tokens := map[string][]string{} // one per load client and algorithm
	for _, alg := range jwtAlgorithms {
		if _, err := b.restartTokenServer(ctx, alg); err != nil {
			return err
		}
		for _, c := range b.clients[:loadClients] {
			token, err := b.accessToken(c)
			if err != nil {
				return err
			}
			tokens[alg] = append(tokens[alg], token)
		}
	}
	kubeconfig, err := b.authzIdentity(ctx, run)
	if err != nil {
		return err
	}
	grpcAddr, _ := testenv.FreeAddr()
	httpAddr, err := testenv.FreeAddr()
	if err != nil {
		return err
	}
	pprofAddr := "//" // none: b.profile skips it
	if b.s.profileDir != "" {
		if pprofAddr, err = testenv.FreeAddr(); err != nil {
			return err
		}
	}
	// startAuthzWith starts bin/latchkey authz with its floor (and pprof at
	// pprofAt unless ""), or the -before build's with neither, listening at
	// httpAt and grpcAt.
	startAuthzWith := func(binary, name, httpAt, grpcAt, pprofAt string, extra ...string) (*process, time.Duration, error) {
		args := append([]string{"authz", "--grpc-bind-address=" + grpcAt, "--http-bind-address=" + httpAt, "--metrics-bind-address=0",
			"--issuer-url=" + b.c.issuer, "--jwks-namespace=" + operatorNamespace}, extra...)
		if binary == "" {
			binary = repoPath("bin", "latchkey")
			args = append(args, "--benchmark-floor")
			if pprofAt != "" {
				args = append(args, "--pprof-bind-address="+pprofAt)
			}
		}
		p, err := start(b.c.dir, name, b.s.serverCPU, []string{"KUBECONFIG=" + kubeconfig}, binary, args...)
		if err != nil {
			return nil, 0, err
		}
		ready, err := p.waitReady(ctx, "http://"+httpAt+"/readyz", 2*time.Minute)
		if err != nil {
			p.stop()
			return nil, 0, err
		}
		return p, ready, nil
	}
	// startAuthzAt is startAuthzWith, profiled at pprofAddr when profiling.
	startAuthzAt := func(binary, name, httpAt, grpcAt string, extra ...string) (*process, time.Duration, error) {
		pprofAt := ""
		if b.s.profileDir != "" {
			pprofAt = pprofAddr
		}
		return startAuthzWith(binary, name, httpAt, grpcAt, pprofAt, extra...)
	}
	startAuthzFrom := func(binary, name string, extra ...string) (*process, time.Duration, error) {
		return startAuthzAt(binary, name, httpAddr, grpcAddr, extra...)
	}
	startAuthz := func(name string, extra ...string) (*process, time.Duration, error) {
		return startAuthzFrom("", name, extra...)
	}
	p, ready, err := startAuthz("authz")
	if err != nil {
		return err
	}
	defer func() { p.stop() }()
	logf("  authorizer ready %s after start, as %s", ready.Round(time.Millisecond), run.identity)

	// The API keys of the loads: live ones among those the introspection load uses (never revoked).
	var keys, names []string
	for i := b.s.revocations; i < b.s.revocations+b.s.introspected; i++ {
		if apiKeyObject(benchNamespace, i).Spec.Environment != latchkeyv1.EnvironmentLive {
			continue
		}
		key, err := b.c.secretData(ctx, keyName(i)+"-apikey", latchkeyv1.APIKeySecretKey)
		if err != nil {
			return err
		}
		keys = append(keys, key)
		names = append(names, keyName(i))
	}
	run.cycled = len(keys)
	// After the introspection step, each key's use this period is written already.
	if err := b.usedThisPeriod(ctx, names, func(i int) error {
		status, err := forwardAuth(httpAddr, keys[i])
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("forward-auth answered %d", status)
		}
		return err
	}); err != nil {
		return err
	}
	for _, credential := range []string{keys[0], tokens[jwtAlgorithms[0]][0], tokens[jwtAlgorithms[1]][0]} {
		if status, err := forwardAuth(httpAddr, credential); err != nil || status != http.StatusOK {
			return fmt.Errorf("forward-auth before the loads: status %d, %v (see %s)", status, err, p.log)
		}
	}

	if run.revocations, run.revocationsFromSend, err = b.authzRevocations(ctx, httpAddr); err != nil {
		return err
	}
	b.server.stop() // nothing but the measured process on the server core from here; the next step that needs one starts it
	b.server = nil

	if err := b.confine(b.s.loadCPU, "19"); err != nil {
		return err
	}
	var forward, keyChecks [][]byte
	for _, key := range keys {
		forward = append(forward, []byte(forwardAuthRequest(httpAddr, key)))
		keyChecks = append(keyChecks, checkRequest(key))
	}
	httpLoad := func(name string, requests [][]byte, body string) (loadResult, error) {
		defer b.profile(ctx, "http://"+pprofAddr, name+".pprof", b.s.warmup+b.s.duration)()
		return b.measure(ctx, name, "load", p, loadJob{Addr: httpAddr, Requests: requests, Connections: b.s.connections,
			Warmup: b.s.warmup, Duration: b.s.duration, ExpectStatus: http.StatusOK, ExpectBody: body})
	}
	check := func(name string, server *process, addr string, checks [][]byte) (loadResult, error) {
		if server == p && !strings.HasPrefix(name, "before-") { // the -before build serves no pprof
			defer b.profile(ctx, "http://"+pprofAddr, name+".pprof", b.s.warmup+b.s.duration)()
		}
		return b.measure(ctx, name, "grpcload", server, grpcJob{Addr: addr, Checks: checks, Streams: b.s.connections, Connections: b.s.grpcConnections,
			Warmup: b.s.warmup, Duration: b.s.duration})
	}
	// checkPaired interleaves the same Checks on server (at addr) and floor (at floorAddr).
	checkPaired := func(name string, server *process, addr string, floor *process, floorAddr string, checks [][]byte) (*loadResult, error) {
		slice, duration := interleavedWindow(b.s.duration)
		res, err := b.measure(ctx, name, "grpcload", server, grpcJob{Addr: addr, Checks: checks, Streams: b.s.connections, Connections: b.s.grpcConnections,
			Warmup: b.s.warmup, Duration: duration, Slice: slice,
			FloorAddr: floorAddr, ServerPID: server.cmd.Process.Pid, FloorServerPID: floor.cmd.Process.Pid})
		return &res, err
	}
	if run.healthz, err = httpLoad("authz-healthz", [][]byte{[]byte("GET /healthz HTTP/1.1\r\nHost: " + httpAddr + "\r\n\r\n")}, "ok"); err != nil {
		return err
	}
	var forwardText []string
	for _, r := range forward {
		forwardText = append(forwardText, string(r))
	}
	// The target is of the floor alone (issue 25): no working floor.
	if run.forwardFloor, run.forward, run.forwardPaired, _, err = shapeLoads("authz-forward-apikey", httpAddr, forwardText, "", serve.FloorWork{},
		func(name string, requests []string, body string) (loadResult, error) {
			return httpLoad(name, rawRequests(requests), body)
		},
		func(name string, requests, floor []string, body, floorBody string, raw serve.FloorWork) (loadResult, error) {
			job := loadJob{Addr: httpAddr, Requests: rawRequests(requests), Connections: b.s.connections,
				Warmup: b.s.warmup, Duration: b.s.duration, ExpectStatus: http.StatusOK, ExpectBody: body}
			return b.measureInterleaved(ctx, name, p, b.interleave(job, p, rawRequests(floor), floorBody), raw)
		}); err != nil {
		return err
	}
	// The row and its floor together on two fresh authorizers, and the row on
	// both (A/A); the first answering requests, the second of otherBinary ("":
	// this build's, with its floor on).
	authzTogether := func(name, otherBinary string, requests []string, second func(addr string) ([]string, string, error)) (*loadResult, error) {
		var sides [2]togetherSide
		var pprofAddrs [2]string // both profiled over the same seconds
		for i, side := range []string{name, name + "-other"} {
			httpAt, err1 := testenv.FreeAddr()
			grpcAt, err2 := testenv.FreeAddr()
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			binary := ""
			if i == 1 {
				binary = otherBinary
			}
			if b.s.profileDir != "" && binary == "" { // another build may serve no pprof
				if pprofAddrs[i], err = testenv.FreeAddr(); err != nil {
					return nil, err
				}
			}
			server, _, err := startAuthzWith(binary, side, httpAt, grpcAt, pprofAddrs[i])
			if err != nil {
				return nil, err
			}
			defer server.stop()
			sides[i] = togetherSide{server: server, addr: httpAt, requests: requests}
		}
		var err error
		if sides[1].requests, sides[1].body, err = second(sides[1].addr); err != nil {
			return nil, err
		}
		return b.togetherLoad(ctx, name, pprofAddrs, sides[0], sides[1])
	}
	if run.forwardTogether, err = authzTogether("together-authz-forward-apikey", "", forwardText, theFloor(forwardText)); err != nil {
		return err
	}
	if run.forwardTogetherAA, err = authzTogether("together-aa-authz-forward-apikey", "", forwardText, theSame(forwardText, "")); err != nil {
		return err
	}
	if b.s.before != "" {
		if run.forwardTogetherBefore, err = authzTogether("together-before-authz-forward-apikey", b.s.before, forwardText, theSame(forwardText, "")); err != nil {
			return err
		}
	}
	// The same checks on a twin of the API with a rate limit that no request
	// reaches (every check spends from its key's budget and answers with the
	// RateLimit fields), alone and then interleaved with the checks on the API
	// without one (two loads one after the other measure this machine's drift),
	// and together with them on two fresh authorizers, judged by the A/A above.
	unreachable := &latchkeyv1.APIRateLimit{RateLimit: latchkeyv1.RateLimit{Requests: 1_000_000_000, Per: metav1.Duration{Duration: time.Second}}}
	removeLimited, err := b.createLimitedAPI(ctx, httpAddr, keys[0], unreachable)
	if err != nil {
		return err
	}
	var limitedText []string
	for _, key := range keys {
		limitedText = append(limitedText, forwardAuthRequestTo(httpAddr, key, limitedAPIName, limitedAPIHost))
	}
	limited := rawRequests(limitedText)
	if run.limited, err = httpLoad("authz-forward-apikey-limited", limited, ""); err != nil {
		return err
	}
	job := loadJob{Addr: httpAddr, Requests: limited, Connections: b.s.connections,
		Warmup: b.s.warmup, Duration: b.s.duration, ExpectStatus: http.StatusOK}
	paired, err := b.measure(ctx, "authz-forward-apikey-limited-interleaved", "load", p, b.interleave(job, p, forward, ""))
	if err != nil {
		return err
	}
	run.limitedPaired = &paired
	if run.limitedTogether, err = authzTogether("together-authz-forward-apikey-limited", "", limitedText, theSame(forwardText, "")); err != nil {
		return err
	}
	if err := removeLimited(); err != nil {
		return err
	}
	if b.s.before != "" {
		// The -before build's authorizer beside this one, at addresses of its own,
		// for a forward-auth pair interleaved between them.
		beforeHTTP, err1 := testenv.FreeAddr()
		beforeGRPC, err2 := testenv.FreeAddr()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		// And this build's, fresh as well and without floor or pprof, as the
		// -before build's runs: both sides alike, as tokenServerPair's are.
		afterHTTP, err1 := testenv.FreeAddr()
		afterGRPC, err2 := testenv.FreeAddr()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		err = func() error {
			before, _, err := startAuthzAt(b.s.before, "authz-before-forward", beforeHTTP, beforeGRPC)
			if err != nil {
				return err
			}
			defer before.stop()
			after, _, err := startAuthzAt(repoPath("bin", "latchkey"), "authz-after-forward", afterHTTP, afterGRPC)
			if err != nil {
				return err
			}
			defer after.stop()
			if run.forwardBeforePair, err = b.pairWithBefore(ctx, "before-authz-forward-apikey", after, afterHTTP, before, beforeHTTP, forward, ""); err != nil {
				return err
			}
			run.grpcBeforePair, err = checkPaired("before-authz-grpc-apikey", after, afterGRPC, before, beforeGRPC, keyChecks)
			return err
		}()
		if err != nil {
			return err
		}
	}
	noopAddr, err := testenv.FreeAddr()
	if err != nil {
		return err
	}
	self, _ := os.Executable()
	noop, err := start(b.c.dir, "grpc-noop", b.s.serverCPU, nil, self, "grpc-noop", noopAddr)
	if err != nil {
		return err
	}
	if err := waitListening(ctx, noop, noopAddr); err != nil {
		noop.stop()
		return err
	}
	run.noop, err = check("grpc-noop", noop, noopAddr, keyChecks)
	if err == nil {
		var paired *loadResult
		if paired, err = checkPaired("authz-grpc-apikey-paired", p, grpcAddr, noop, noopAddr, keyChecks); err == nil {
			run.grpcKeyPaired = *paired
		}
	}
	noop.stop()
	if err != nil {
		return err
	}
	if run.grpcKey, err = check("authz-grpc-apikey", p, grpcAddr, keyChecks); err != nil {
		return err
	}
	for _, alg := range jwtAlgorithms {
		j := jwtRun{alg: alg}
		if err := runChild(ctx, "verify", b.s.serverCPU, verifyJob{Algorithm: alg, Bytes: signingInputSize(tokens[alg][0]),
			Duration: b.s.duration}, &j.verify); err != nil {
			return err
		}
		logf("  %s raw verification on core %s: %.0f/s", alg, b.s.serverCPU, j.verify.Rate)
		var checks [][]byte
		for _, token := range tokens[alg] {
			checks = append(checks, checkRequest(token))
		}
		if j.load, err = check("authz-grpc-"+alg, p, grpcAddr, checks); err != nil {
			return err
		}
		run.jwt = append(run.jwt, j)
	}
	// The same token loads against an authorizer that verifies every signature.
	p.stop()
	if run.shared, err = b.sharedLimit(ctx, kubeconfig, keys[1]); err != nil {
		return err
	}
	if p, _, err = startAuthz("authz-uncached", "--token-cache-size=0"); err != nil {
		return err
	}
	for i := range run.jwt {
		var checks [][]byte
		for _, token := range tokens[run.jwt[i].alg] {
			checks = append(checks, checkRequest(token))
		}
		if run.jwt[i].uncached, err = check("authz-grpc-"+run.jwt[i].alg+"-uncached", p, grpcAddr, checks); err != nil {
			return err
		}
	}
	if b.s.before != "" {
		if run.before, err = b.authzBefore(ctx, &p, startAuthzFrom, tokens, grpcAddr, check); err != nil {
			return err
		}
	}
	b.report.authz = run
	return nil
}

// authzBefore measures the uncached token Checks again on the -before build
// (the API-key Check's pair is interleaved: grpcBeforePair); *p is the running
// authorizer, replaced.
func (b *bench) authzBefore(ctx context.Context, p **process, startFrom func(binary, name string, extra ...string) (*process, time.Duration, error),
	tokens map[string][]string, grpcAddr string,
	check func(name string, server *process, addr string, checks [][]byte) (loadResult, error)) (map[string]loadResult, error) {
	before := map[string]loadResult{}
	(*p).stop()
	var err error
	if *p, _, err = startFrom(b.s.before, "authz-before-uncached", "--token-cache-size=0"); err != nil {
		return nil, err
	}
	for _, alg := range jwtAlgorithms {
		var checks [][]byte
		for _, token := range tokens[alg] {
			checks = append(checks, checkRequest(token))
		}
		name := "authz-grpc-" + alg + "-uncached"
		if before[name], err = check("before-"+name, *p, grpcAddr, checks); err != nil {
			return nil, err
		}
	}
	return before, nil
}

// createAPI creates the API the checks name: GET /v1/leads requires leads:read.
func (b *bench) createAPI(ctx context.Context) error {
	return b.c.client.Create(ctx, benchAPI(apiName, apiIdentifier, apiHost))
}

func benchAPI(name, identifier, host string) *latchkeyv1.API {
	return &latchkeyv1.API{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: name},
		Spec: latchkeyv1.APISpec{
			Identifier: identifier,
			Hosts:      []string{host},
			Scopes:     []latchkeyv1.APIScope{{Name: "leads:read"}, {Name: "leads:write"}},
			Rules: []latchkeyv1.APIRule{
				{Methods: []string{http.MethodGet}, PathPrefix: "/v1/leads", Scopes: []string{"leads:read"}},
				{PathPrefix: "/v1/leads", Scopes: []string{"leads:write"}},
			},
			DefaultAction: latchkeyv1.DefaultActionDeny,
		},
	}
}

// The bench API's twin for the rate-limited row: the same rules, another
// identifier and host, and a rate limit.
const (
	limitedAPIName       = "leads-limited"
	limitedAPIHost       = "limited.bench.example"
	limitedAPIIdentifier = "https://limited.bench.example"
)

// createLimitedAPI creates the bench API's twin with rl and waits until the
// authorizer at httpAddr answers a check of key on it with the RateLimit
// fields; the function it returns deletes the twin.
func (b *bench) createLimitedAPI(ctx context.Context, httpAddr, key string, rl *latchkeyv1.APIRateLimit) (func() error, error) {
	api := benchAPI(limitedAPIName, limitedAPIIdentifier, limitedAPIHost)
	api.Spec.RateLimit = rl
	if err := b.c.client.Create(ctx, api); err != nil {
		return nil, err
	}
	remove := func() error { return b.c.client.Delete(context.Background(), api) }
	request := forwardAuthRequestTo(httpAddr, key, limitedAPIName, limitedAPIHost)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		status, h, _, err := realAnswer(httpAddr, []byte(request))
		if err == nil && status == http.StatusOK && h.Get("RateLimit-Policy") != "" {
			return remove, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, errors.Join(fmt.Errorf("the authorizer did not apply the rate-limited API within 10 s"), remove())
}

// authzIdentity is the authorizer's kubeconfig: the latchkey-authz user when
// config/local binds a ClusterRole to it, else (until it does) the control plane's admin.
func (b *bench) authzIdentity(ctx context.Context, run *authzRun) (string, error) {
	var bindings rbacv1.ClusterRoleBindingList
	if err := b.c.client.List(ctx, &bindings); err != nil {
		return "", err
	}
	for _, binding := range bindings.Items {
		for _, s := range binding.Subjects {
			if s.Kind == rbacv1.UserKind && s.Name == authzUser {
				run.identity = authzUser + " (config/local's roles)"
				return filepath.Join(b.c.dir, authzUser+".kubeconfig"), nil
			}
		}
	}
	run.identity = "the control plane's admin (config/local binds no role to " + authzUser + ")"
	return b.c.env.Kubeconfig, nil
}

// authzRevocations revokes s.revocations APIKeys that no other step uses while a
// poller asks forward-auth about each every millisecond, and returns the times from
// each patch's response, and from sending it, to the first 401.
func (b *bench) authzRevocations(ctx context.Context, httpAddr string) ([]time.Duration, []time.Duration, error) {
	if err := b.confine(b.s.loadCPU, "0"); err != nil { // the API server carries the revocation
		return nil, nil, err
	}
	var latencies, fromSend []time.Duration
	first := b.s.revocations + b.s.introspected + b.s.lastUsedKeys
	for i := first; i < first+b.s.revocations; i++ {
		key, err := b.c.secretData(ctx, keyName(i)+"-apikey", latchkeyv1.APIKeySecretKey)
		if err != nil {
			return nil, nil, err
		}
		sent, d, err := b.revokeAndPoll(ctx, httpAddr, &latchkeyv1.APIKey{}, keyName(i), forwardAuthRequest(httpAddr, key),
			func(status int, _ []byte) bool { return status == http.StatusUnauthorized })
		if err != nil {
			return nil, nil, fmt.Errorf("APIKey %s: %w", keyName(i), err)
		}
		latencies, fromSend = append(latencies, d), append(fromSend, sent)
	}
	logf("  revocation → first 401 at forward-auth, from the patch's response: p50 %s p99 %s (from sending it: p50 %s p99 %s)",
		pct(latencies, 0.5), pct(latencies, 0.99), pct(fromSend, 0.5), pct(fromSend, 0.99))
	return latencies, fromSend, nil
}

// forwardAuthRequest is a raw forward-auth request as Caddy's forward_auth sends
// it: the client's headers, and the original method, host and URI in X-Forwarded-*.
func forwardAuthRequest(addr, credential string) string {
	return forwardAuthRequestTo(addr, credential, apiName, apiHost)
}

// forwardAuthRequestTo is forwardAuthRequest for the bench namespace's API name at host.
func forwardAuthRequestTo(addr, credential, name, host string) string {
	return "GET /authz/api/" + benchNamespace + "/" + name + " HTTP/1.1\r\nHost: " + addr + "\r\n" +
		"User-Agent: bench\r\nAccept: application/json\r\nAuthorization: Bearer " + credential + "\r\n" +
		"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Method: GET\r\n" +
		"X-Forwarded-Host: " + host + "\r\nX-Forwarded-Uri: " + apiPath + "\r\n\r\n"
}

// forwardAuth sends one forward-auth request and returns the status.
func forwardAuth(addr, credential string) (int, error) {
	status, _, err := forwardAuthAnswer(addr, credential)
	return status, err
}

// forwardAuthAnswer is forwardAuth's answer: its status and headers.
func forwardAuthAnswer(addr, credential string) (int, http.Header, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, forwardAuthRequest(addr, credential)); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, err
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

// checkRequest is an ext_authz CheckRequest, proto-encoded, as Envoy sends it for
// GET /v1/leads with a route's context_extensions naming the API.
func checkRequest(credential string) []byte {
	data, _ := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "8e0a3c1e-3f4d-4a4b-9b1e-2f6c5d7e8f90", Method: http.MethodGet, Path: apiPath, Host: apiHost,
			Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":authority": apiHost, ":method": http.MethodGet, ":path": apiPath, ":scheme": "https",
				"authorization": "Bearer " + credential, "user-agent": "bench", "accept": "application/json",
				"x-forwarded-proto": "https", "x-request-id": "8e0a3c1e-3f4d-4a4b-9b1e-2f6c5d7e8f90",
			},
		}},
		ContextExtensions: map[string]string{authz.ContextAPI: benchNamespace + "/" + apiName},
	}})
	return data
}

// signingInputSize is the length of a JWS's signing input (header.payload).
func signingInputSize(token string) int { return strings.LastIndexByte(token, '.') }

// waitListening waits until addr accepts connections.
func waitListening(ctx context.Context, p *process, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if !p.running() {
			return fmt.Errorf("%s exited; see %s:\n%s", p.name, p.log, tail(p.log, 15))
		}
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return nil
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s not listening on %s after 30 s", p.name, addr)
}

// grpcJob is a closed-loop load of ext_authz Checks: Streams concurrent calls
// spread over Connections HTTP/2 connections (stream i on connection i mod
// Connections), each sending its next Check when the previous answer arrives.
type grpcJob struct {
	Addr             string
	Checks           [][]byte // proto-encoded CheckRequests; stream i starts at check i and cycles
	Streams          int
	Connections      int // per server; at least 1
	Warmup, Duration time.Duration
	// FloorAddr, when set, interleaves the load with the same Checks sent to the
	// server there, on Connections of its own, in slices of Slice (as
	// loadJob.FloorAddr): ServerPID and FloorServerPID are the processes
	// answering at Addr and FloorAddr, both on the server core.
	FloorAddr                 string        `json:",omitempty"`
	Slice                     time.Duration `json:",omitempty"`
	ServerPID, FloorServerPID int           `json:",omitempty"`
}

// runGRPCLoad is `bench grpcload`: every answer must be OK.
func runGRPCLoad(job grpcJob) (loadResult, error) {
	checks := make([]encodedCheck, len(job.Checks))
	for i, data := range job.Checks {
		if err := proto.Unmarshal(data, &authv3.CheckRequest{}); err != nil {
			return loadResult{}, err
		}
		checks[i] = encodedCheck(data)
	}
	var conns [][]*grpc.ClientConn // by side
	for _, addr := range []string{job.Addr, job.FloorAddr} {
		if addr == "" {
			continue
		}
		var side []*grpc.ClientConn
		for range max(job.Connections, 1) {
			// A connection each: gRPC's client shares one per target otherwise.
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.ForceCodecV2(loadCodec{encoding.GetCodecV2("proto")})))
			if err != nil {
				return loadResult{}, err
			}
			defer conn.Close()
			side = append(side, conn)
		}
		conns = append(conns, side)
	}
	check := func(stream, i, side int) error {
		resp := new(authv3.CheckResponse)
		conn := conns[side][stream%len(conns[side])]
		if err := conn.Invoke(context.Background(), checkMethod, &checks[i%len(checks)], resp); err != nil {
			return err
		}
		if code := codes.Code(resp.GetStatus().GetCode()); code != codes.OK {
			return fmt.Errorf("check answered %s: %s", code, resp.GetStatus().GetMessage())
		}
		return nil
	}
	if job.FloorAddr == "" {
		return closedLoop(job.Streams, job.Warmup, job.Duration, 0, func(stream, i, _ int) error { return check(stream, i, 0) }), nil
	}
	if job.Slice <= 0 || job.Duration%(2*job.Slice) != 0 {
		return loadResult{}, fmt.Errorf("an interleaved load needs a duration of whole slice pairs")
	}
	return closedLoop(job.Streams, job.Warmup, job.Duration, job.Slice, check, job.ServerPID, job.FloorServerPID), nil
}

// checkMethod is the Authorization service's Check, as Envoy calls it.
var checkMethod = "/" + authv3.Authorization_ServiceDesc.ServiceName + "/Check"

// encodedCheck is a CheckRequest as its wire bytes, which loadCodec sends as
// they are: Envoy encodes each request once, and the load generator, on one
// core, would otherwise spend on encoding the same messages again, call after
// call, the CPU it needs to keep the server's core busy.
type encodedCheck []byte

// loadCodec is gRPC's proto codec, except that an encodedCheck is sent as it is.
type loadCodec struct{ encoding.CodecV2 }

// Name is empty, so that requests say content-type application/grpc, as
// Envoy's do (a forced codec's name becomes the content-subtype).
func (loadCodec) Name() string { return "" }

func (c loadCodec) Marshal(v any) (mem.BufferSlice, error) {
	if check, ok := v.(*encodedCheck); ok {
		return mem.BufferSlice{mem.SliceBuffer(*check)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// closedLoop runs workers that each call do(worker, i, side) for i = worker, worker+1, …
// until the measured window is over, timing the calls that end within it. With
// a slice, the calls alternate between side 0 and side 1 by slice (schedule), the
// servers' CPU (pids: side 0's, side 1's) is charged by slice (sideCPU), and the
// result is sidesOf's; without, every call is side 0's.
func closedLoop(workers int, warmup, duration, slice time.Duration, do func(worker, i, side int) error, pids ...int) loadResult {
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	sched := schedule{From: measureFrom, Slice: slice} // no raw slice: every call is side 0's or 1's
	results := make([][2]workerResult, workers)
	var wg sync.WaitGroup
	var serverCPU [2]float64
	if slice > 0 && len(pids) == 2 && pids[0] > 0 {
		wg.Go(func() { serverCPU, _ = sideCPU(sched, pids[0], pids[1], end) })
	}
	for w := range workers {
		wg.Go(func() {
			for s := range results[w] {
				results[w][s].prepare(slice, duration)
			}
			for i := w; ; i++ {
				sent := time.Now()
				if sent.After(end) {
					return
				}
				k, side := int64(-1), 0
				if slice > 0 {
					k, side = sched.at(sent)
				}
				r := &results[w][side]
				err := do(w, i, side)
				at := time.Now()
				switch {
				case err != nil:
					r.fail(err)
				case !at.Before(measureFrom) && !at.After(end):
					r.succeeded(at.Sub(sent), k)
				}
			}
		})
	}
	wg.Wait()
	if slice > 0 {
		return sidesOf(results, serverCPU, warmup, duration)
	}
	row := make([]workerResult, workers)
	for w := range results {
		row[w] = results[w][0]
	}
	return summarize(row, duration)
}

// noopCheck is the gRPC reference: Check answers OK at once.
type noopCheck struct {
	authv3.UnimplementedAuthorizationServer
}

func (noopCheck) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

// serveNoopCheck is `bench grpc-noop <address>`, until SIGTERM: the limits of
// authz.(*Server).GRPCServer without TLS, as `latchkey authz` serves h2c, and
// the generated service with gRPC's proto codec (the authorizer's own codec only
// changes how Check's request is read).
func serveNoopCheck(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(256<<10), grpc.MaxHeaderListSize(64<<10))
	authv3.RegisterAuthorizationServer(g, noopCheck{})
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-stop; g.Stop() }()
	return g.Serve(l)
}

// verifyJob measures the raw verification rate of one algorithm: the standard
// library's verification of a signature over a message the size of a token's
// signing input (SHA-256 included for ES256 and RS256, as a JWS verifier hashes),
// in a tight loop, one goroutine: the floor under a Check with a token.
type verifyJob struct {
	Algorithm string
	Bytes     int
	Duration  time.Duration
}

type verifyResult struct {
	Verifications int
	Rate          float64 // verifications per second
}

func runVerify(job verifyJob) (verifyResult, error) {
	now := time.Now()
	key, err := signingkeys.Generate(job.Algorithm, rand.Reader, now, now, now.Add(time.Hour))
	if err != nil {
		return verifyResult{}, err
	}
	signer := key.Private.Key.(crypto.Signer)
	message := make([]byte, job.Bytes)
	_, _ = rand.Read(message)
	digest := sha256.Sum256(message)
	var verify func() bool
	switch pub := signer.Public().(type) {
	case ed25519.PublicKey:
		sig, err := signer.Sign(rand.Reader, message, crypto.Hash(0))
		if err != nil {
			return verifyResult{}, err
		}
		verify = func() bool { return ed25519.Verify(pub, message, sig) }
	case *ecdsa.PublicKey:
		sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return verifyResult{}, err
		}
		verify = func() bool { d := sha256.Sum256(message); return ecdsa.VerifyASN1(pub, d[:], sig) }
	case *rsa.PublicKey:
		sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return verifyResult{}, err
		}
		verify = func() bool {
			d := sha256.Sum256(message)
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil
		}
	default:
		return verifyResult{}, fmt.Errorf("%s: unexpected key type %T", job.Algorithm, pub)
	}
	for range 100 { // warm up
		if !verify() {
			return verifyResult{}, fmt.Errorf("%s signature does not verify", job.Algorithm)
		}
	}
	var res verifyResult
	begin := time.Now()
	for time.Since(begin) < job.Duration {
		if !verify() {
			return res, fmt.Errorf("%s signature does not verify", job.Algorithm)
		}
		res.Verifications++
	}
	res.Rate = float64(res.Verifications) / time.Since(begin).Seconds()
	return res, nil
}

// authzRows renders the authorizer's rows of the results table.
func (r *report) authzRows(add func(...string)) {
	a := r.authz
	if a == nil {
		return
	}
	ratio := func(x, ref loadResult) float64 { return x.Rate / ref.Rate }
	rate := func(x loadResult, unit string) string {
		return fmt.Sprintf("%.0f %s/s; p50 %s, p99 %s", x.Rate, unit, ms(x.P50), ms(x.P99))
	}
	forward, forwardFloor, _, how := r.shapePair(a.forward, a.forwardFloor, a.forwardPaired, 0)
	fr, frCell := headlineRatio(ratio(forward, forwardFloor), pairMode(a.forwardPaired), a.forwardTogether, a.forwardTogetherAA, rawRate{}, r.window())
	add(fmt.Sprintf("8. Edge authorizer: forward-auth API-key check (%d live keys cycled, %d in the index), %d connections", a.cycled, a.keys, r.s.connections),
		rate(forward, "checks"), fmt.Sprintf("forward-auth floor (the same requests answered with the same headers by a no-op, same process): %.0f/s; GET /healthz %.0f/s (%.1f%%)%s%s",
			forwardFloor.Rate, a.healthz.Rate, 100*ratio(forward, a.healthz), r.perCPUShare(forward, forwardFloor.perServerCPU(r.window())), how)+
			togetherNote(a.forwardTogether, a.forwardTogetherAA, rawRate{}, "", r.window(), sliceOf(r.s.duration)),
		frCell, "≥ 85% of its floor; p99 < 2 ms", yesNo(fr >= targetShapeRatio && forward.P99 < targetAuthzP99))
	if l := a.limitedPaired; l != nil && l.Floor != nil {
		// Its A/A is the forward row's: the same two kinds of fresh authorizer,
		// measured just before.
		lr, lrCell := headlineRatio(ratio(*l, *l.Floor), "interleaved", a.limitedTogether, a.forwardTogetherAA, rawRate{}, r.window())
		add("8. Edge authorizer: forward-auth API-key check with a rate limit on the API (counted, never reached)",
			rate(*l, "checks"), fmt.Sprintf("the same checks on the bench API, which has no limit, interleaved with them in slices of %.1f s: %.0f/s%s%s (each alone, one after the other and profiled: %.0f/s with the limit, %.0f/s without: %.1f%%)",
				sliceOf(r.s.duration).Seconds(), l.Floor.Rate, pairSpread(*l, 0), r.perCPUShare(*l, l.Floor.perServerCPU(r.window())), a.limited.Rate, a.forward.Rate, 100*ratio(a.limited, a.forward))+
				togetherNote(a.limitedTogether, a.forwardTogetherAA, rawRate{}, "", r.window(), sliceOf(r.s.duration))+
				"; its floor is the same check without a limit, and its A/A the row above's",
			lrCell, "≥ 95% of the same check without limits", yesNo(lr >= 0.95))
	}
	if a.shared != nil {
		r.sharedLimitRow(add, a.shared)
	}
	grpcKey, noop, _, how := r.shapePair(a.grpcKey, a.noop, a.grpcKeyPaired, 0)
	gr := ratio(grpcKey, noop)
	add(fmt.Sprintf("8. Edge authorizer: gRPC Check (ext_authz), API key, %d streams on %d connections", r.s.connections, max(r.s.grpcConnections, 1)),
		rate(grpcKey, "checks"), fmt.Sprintf("no-op Check server (generated service, same limits, same requests), same core: %.0f/s%s%s", noop.Rate,
			r.perCPUShare(grpcKey, noop.perServerCPU(r.window())), how),
		fmt.Sprintf("%.1f%%", 100*gr), "≥ 100% of the no-op Check", yesNo(gr >= 1))
	for _, j := range a.jwt {
		jr := j.load.Rate / j.verify.Rate
		add(fmt.Sprintf("8. Edge authorizer: gRPC Check, %s access token (%d tokens, each reused: verified once, then from the token cache), %d streams on %d connections", j.alg, loadClients, r.s.connections, max(r.s.grpcConnections, 1)),
			rate(j.load, "checks"), fmt.Sprintf("raw %s verification, same core: %.0f/s", j.alg, j.verify.Rate),
			fmt.Sprintf("%.1f%%", 100*jr), "(no target)", "—")
		floor := combined(j.verify.Rate, a.noop.Rate)
		ur := j.uncached.Rate / floor
		add(fmt.Sprintf("8. Edge authorizer: gRPC Check, %s access token, signature verified on every check (--token-cache-size=0)", j.alg),
			rate(j.uncached, "checks"), fmt.Sprintf("raw %s verification (%.0f/s) combined with the no-op Check (%.0f/s): 1/(1/a+1/b) = %.0f/s%s", j.alg, j.verify.Rate, a.noop.Rate, floor,
				r.perCPUShare(j.uncached, combined(j.verify.Rate, a.noop.perServerCPU(r.window())))),
			fmt.Sprintf("%.1f%%", 100*ur), "≥ 60% of raw verification combined with the no-op Check", yesNo(ur >= targetAuthzRatio))
	}
	if d := a.revocations; len(d) > 0 {
		add(fmt.Sprintf("8. Edge authorizer: revocation → first 401 at forward-auth (%d revocations)", len(d)),
			fmt.Sprintf("from the patch's response: p50 %s, p99 %s, max %s (from sending it: p99 %s)",
				ms(pct(d, 0.5)), ms(pct(d, 0.99)), ms(pct(d, 1)), ms(pct(a.revocationsFromSend, 0.99))),
			"—", "—", "p99 < 50 ms from the patch's response", yesNo(pct(d, 0.99) < targetRevocationFromAnswerP99))
	}
}

// writeAuthz details the authorizer's measurements.
func (r *report) writeAuthz(p func(string, ...any)) {
	a := r.authz
	p("### Edge authorizer\n\n")
	p("`latchkey authz` as a process on core %s (taskset, GOMAXPROCS=1), as %s, watching the run's %d APIKeys, its OAuthClients and one API, ", r.s.serverCPU, a.identity, a.keys)
	p("`bench/leads` (identifier %s, host %s; GET /v1/leads requires leads:read, default action deny). ", apiIdentifier, apiHost)
	p("Every check asks about GET %s on that API and is allowed: forward-auth as Caddy's forward_auth asks (`GET /authz/api/bench/leads`, X-Forwarded-Method, -Host, -Uri, ", apiPath)
	p("Authorization: Bearer), keep-alive connections in a closed loop; gRPC as Envoy's ext_authz asks (headers map, context_extensions `%s`), ", authz.ContextAPI)
	p("%d concurrent unary calls over %d HTTP/2 connections in a closed loop (Envoy opens one to the authorization service per worker thread: a proxy with %d workers), each request sent as its encoded bytes, as Envoy encodes a request once (gRPC's client with a codec that sends them as they are; answers decoded by gRPC's proto codec). ", r.s.connections, max(r.s.grpcConnections, 1), max(r.s.grpcConnections, 1))
	p("API-key loads cycle through %d live keys; token loads through %d access tokens per algorithm, one per OAuthClient, issued by the token server (audience %s). ", a.cycled, loadClients, apiIdentifier)
	p("The token server is stopped during the loads: only the measured process runs on its core. ")
	p("The no-op Check server is the benchmark's own (`bench grpc-noop`: the authorizer's message and header limits, the generated Authorization service with gRPC's proto codec as any go-control-plane server has them, answering OK at once; the authorizer reads a CheckRequest's fields itself instead of decoding the whole message) on the same core, loaded with the same API-key requests; ")
	p("the raw verification (`bench verify`) verifies a signature of that algorithm over a message the size of a token's signing input with the standard library, SHA-256 included for ES256, one goroutine on the same core.\n\n")
	p("| Load | Rate | p50 | p99 | max | Server core busy | Load core busy |\n|---|---|---|---|---|---|---|\n")
	row := func(name string, x loadResult) {
		window := (r.s.warmup + r.s.duration).Seconds()
		p("| %s | %.0f/s | %s | %s | %s | %.0f%% | %.0f%% |\n", name, x.Rate, ms(x.P50), ms(x.P99), ms(x.Max), 100*x.ServerCPU/window, 100*x.CPUSeconds/window)
	}
	row("HTTP GET /healthz (reference)", a.healthz)
	row("HTTP forward-auth, API key", a.forward)
	row("gRPC no-op Check (reference)", a.noop)
	row("gRPC Check, API key", a.grpcKey)
	for _, j := range a.jwt {
		row("gRPC Check, "+j.alg+" access token (token cache)", j.load)
		row("gRPC Check, "+j.alg+" access token (no token cache)", j.uncached)
	}
	p("\n")
	for _, j := range a.jwt {
		p("Raw %s verification: %.0f/s (%d in %s).\n", j.alg, j.verify.Rate, j.verify.Verifications, r.s.duration)
	}
	p("\nA load core near 100%% busy means the load generator, not the server, set the rate: the ratio to a reference loaded the same way then understates the server's headroom.\n\n")
	if len(a.revocations) > 0 {
		p("Revocation at the authorizer: with the manager, the token server and the authorizer running, %d APIKeys no other measurement uses were revoked one at a time; ", len(a.revocations))
		p("a poller sent each key's forward-auth request every millisecond on one keep-alive connection, and the latency runs from the response to the merge patch `{\"spec\":{\"revoked\":true}}` to the first 401 ")
		p("(0 when the 401 came first); the time from sending the patch, which the token server's revocation rows give, is beside it.\n\n")
	}
}
