package tokenserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/latchkey-dev/latchkey/internal/flowcontrol"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/serve"
	"github.com/latchkey-dev/latchkey/tokenserver/leaks"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
	"github.com/latchkey-dev/latchkey/tokenserver/thirdparty"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// Config is everything the server needs to know; the flags of `latchkey tokenserver`.
type Config struct {
	// IssuerURL is the "iss" of every token and the base of the metadata URLs.
	IssuerURL string
	// SigningAlgorithm is RS256 (default), ES256 or EdDSA.
	SigningAlgorithm string
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64
	// ConcurrentRequests is how many requests are served at once (default
	// GOMAXPROCS less one, at least one: a core is left to read and answer
	// requests, so that callers who keep the others busy signing cannot delay
	// another's request before it is even read); the others wait in their
	// caller's queue (admission.go).
	ConcurrentRequests int
	// MaxRequestsInFlight bounds the requests served or waiting, over all callers
	// (default 256), and QueuePerCaller those one caller may have waiting (default
	// 32); beyond either, or past OverloadWait (default 250 ms) in a queue, a
	// request gets 503 with Retry-After, so that a flood costs bounded memory and
	// never hangs a client.
	MaxRequestsInFlight, QueuePerCaller int
	OverloadWait                        time.Duration
	// OverloadSchedulingLatency: while the Go scheduler's 90th-percentile latency
	// exceeds it, the CPU is behind (overload.go), and callers that already have a
	// request in are shed. Zero disables it.
	OverloadSchedulingLatency time.Duration
	// ShedDelay holds the answer to a request shed from a full or busy caller's
	// queue (default 1 s; negative: none), so that a flood sends fewer.
	ShedDelay time.Duration
	// TrustedProxies are the proxies whose X-Forwarded-For names the source of a
	// request: the flow of requests that prove nothing. Their connections are not
	// bounded by MaxConnectionsPerSource.
	TrustedProxies []netip.Prefix
	// MaxConnectionsPerSource bounds the connections served at once from one
	// source address (default 128; negative: none): beyond, a connection waits,
	// unread, until one of its source's closes (flowcontrol.LimitBySource).
	MaxConnectionsPerSource int
	// AnonymousRequestsPerSource is each source address's budget of requests
	// that prove nothing (no client secret), per second, in bursts twice as large
	// (default 100; negative: none).
	AnonymousRequestsPerSource int
	// IOConcurrency bounds the API-server and upstream calls made on behalf of
	// requests at once (default 16), IOTimeout each request's share of them
	// (default 5 s).
	IOConcurrency int
	IOTimeout     time.Duration
}

// Server answers the OAuth endpoints from an index.Index and a key ring.
type Server struct {
	cfg     Config
	index   *index.Index
	keys    *Keys
	clock   clock.PassiveClock
	log     logr.Logger
	metrics *metrics
	// registry receives the metrics of what is enabled later (EnableLeakReports).
	registry prometheus.Registerer
	usage    usageRecorder
	// readiness is /readyz: the caches synced and a signing key loaded.
	readiness *serve.Readiness
	// cpu admits requests to be served, io their API-server and upstream calls,
	// both fairly by caller; anonymous is each source's budget of requests that
	// prove nothing (admission.go).
	cpu, io   *flowcontrol.Limiter
	anonymous *flowcontrol.Budget
	// scheduler says when the CPU is overloaded.
	scheduler *schedulerWatch
	// tokenGrants are the grant types the token endpoint serves (token.go).
	tokenGrants map[string]oauth.Grant
	// thirdParty is the authorization_code side; nil until EnableThirdPartyApps.
	thirdParty *thirdparty.Server
	// leakReports answers secret-scanning reports and self-revocation; nil until
	// EnableLeakReports.
	leakReports *leaks.Server
	// metadata is the RFC 8414 document, rendered again when the APIs change.
	metadata atomic.Pointer[renderedMetadata]
}

// usageRecorder notes that a credential was accepted, for status.lastUsedAt.
type usageRecorder interface {
	Used(kind string, ref index.Ref, noted *atomic.Uint64, now time.Time)
}

// NewServer assembles a server. Handler() serves it; Run (in run.go) wires it to
// the API server.
func NewServer(cfg Config, idx *index.Index, keys *Keys, clk clock.PassiveClock, log logr.Logger, reg prometheus.Registerer, usage usageRecorder) (*Server, error) {
	if _, err := url.Parse(cfg.IssuerURL); err != nil || cfg.IssuerURL == "" {
		return nil, fmt.Errorf("invalid issuer URL %q", cfg.IssuerURL)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 10
	}
	cfg = withAdmissionDefaults(cfg)
	s := &Server{cfg: cfg, index: idx, keys: keys, clock: clk, log: log, usage: usage, registry: reg,
		scheduler: &schedulerWatch{threshold: cfg.OverloadSchedulingLatency}}
	s.readiness = &serve.Readiness{Check: func() error {
		if !keys.Ready(clk.Now()) {
			return errors.New("no signing key loaded")
		}
		return nil
	}}
	s.cpu = flowcontrol.New(flowcontrol.Config{
		Seats: cfg.ConcurrentRequests, QueueLength: cfg.QueuePerCaller,
		MaxWaiting: max(cfg.MaxRequestsInFlight-cfg.ConcurrentRequests, 1), MaxWait: cfg.OverloadWait,
		Overloaded: s.scheduler.Overloaded,
	})
	if cfg.AnonymousRequestsPerSource > 0 {
		s.anonymous = flowcontrol.NewBudget(cfg.AnonymousRequestsPerSource, time.Second, 2*cfg.AnonymousRequestsPerSource, maxAnonymousSources)
	}
	s.io = flowcontrol.New(flowcontrol.Config{
		Seats: cfg.IOConcurrency, QueueLength: cfg.QueuePerCaller,
		MaxWaiting: cfg.MaxRequestsInFlight, MaxWait: cfg.IOTimeout,
	})
	s.metrics = newMetrics(reg, s)
	s.tokenGrants = s.grants()
	if _, err := s.currentMetadata(); err != nil {
		return nil, err
	}
	return s, nil
}

// Handler routes the server's endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	token := s.instrument("token", s.oauthEndpoint([]string{"resource", "audience"}, s.handleToken))
	page := func(h func(*thirdparty.Server) http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if s.thirdParty == nil {
				thirdparty.Off(w, r)
				return
			}
			h(s.thirdParty)(w, r)
		}
	}
	introspect := s.instrument("introspect", s.oauthEndpoint(nil, s.handleIntrospect))
	authorize := s.instrument("authorize", s.browserEndpoint(page(func(t *thirdparty.Server) http.HandlerFunc { return t.HandleAuthorize })))
	mux.Handle("POST "+tokenPath, token)
	mux.Handle("POST "+introspectPath, introspect)
	mux.Handle("POST /oauth2/revoke", s.instrument("revoke", s.oauthEndpoint(nil, s.handleRevoke)))
	mux.Handle("GET /oauth2/authorize", authorize)
	mux.Handle("GET /oauth2/callback", s.instrument("callback", s.browserEndpoint(page(func(t *thirdparty.Server) http.HandlerFunc { return t.HandleCallback }))))
	mux.Handle("POST /oauth2/consent", s.instrument("consent", s.browserEndpoint(page(func(t *thirdparty.Server) http.HandlerFunc { return t.HandleConsent }))))
	mux.Handle("POST /secret-scanning/{reporter}", s.instrument("secret_scanning", s.leakEndpoint(leaks.MaxReportBytes,
		func(l *leaks.Server) bodyHandler { return l.HandleReport })))
	mux.Handle("POST "+CredentialRevocationPath, s.instrument("credential_revoke", s.leakEndpoint(leaks.MaxRevokeBytes,
		func(l *leaks.Server) bodyHandler { return l.HandleRevoke })))
	mux.HandleFunc("GET /oauth2/assets/style.css", thirdparty.HandleAsset)
	// The product's partner documentation names /oauth/authorize and /oauth/token;
	// they are the same handlers (metadata advertises /oauth2/...).
	mux.Handle("GET "+thirdparty.LegacyAuthorizePath, authorize)
	mux.Handle("POST /oauth/token", token)
	mux.Handle("GET /oauth2/jwks", s.instrument("jwks", s.handleJWKS))
	mux.Handle("GET /.well-known/oauth-authorization-server", s.instrument("metadata", s.handleMetadata))
	mux.Handle("GET /.well-known/openid-configuration", s.instrument("metadata", s.handleMetadata))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", s.readiness.Handler)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch shortcut(r) {
		case introspectPath:
			introspect.ServeHTTP(w, r)
		case tokenPath:
			token.ServeHTTP(w, r)
		default:
			mux.ServeHTTP(w, r)
		}
	})
}

const (
	tokenPath      = "/oauth2/token"
	introspectPath = "/oauth2/introspect"
)

// shortcut is the path of one of the two busiest endpoints when r is spelled as
// the mux would route it there (a POST to the clean path, nothing escaped), ""
// otherwise: those requests skip the mux's pattern matching (make bench: a tenth
// of introspection's own time). Every other spelling goes to the mux.
func shortcut(r *http.Request) string {
	if r.Method != http.MethodPost || r.URL.RawPath != "" {
		return ""
	}
	switch r.URL.Path {
	case introspectPath, tokenPath:
		return r.URL.Path
	}
	return ""
}

// Ready reports whether the caches have synced and a signing key is loaded.
func (s *Server) Ready() bool { return s.readiness.Ready() == nil }

// SetSynced marks the watch caches as synced.
func (s *Server) SetSynced() { s.readiness.MarkSynced() }

// maxAnonymousSources bounds the source addresses whose budget is kept.
const maxAnonymousSources = 100000

// withAdmissionDefaults fills in the admission settings left zero.
func withAdmissionDefaults(cfg Config) Config {
	if cfg.ConcurrentRequests <= 0 {
		cfg.ConcurrentRequests = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if cfg.MaxRequestsInFlight <= 0 {
		cfg.MaxRequestsInFlight = 256
	}
	if cfg.QueuePerCaller <= 0 {
		cfg.QueuePerCaller = 32
	}
	if cfg.OverloadWait <= 0 {
		cfg.OverloadWait = 250 * time.Millisecond
	}
	if cfg.ShedDelay == 0 {
		cfg.ShedDelay = time.Second
	}
	if cfg.IOConcurrency <= 0 {
		cfg.IOConcurrency = 16
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = 5 * time.Second
	}
	if cfg.MaxConnectionsPerSource == 0 {
		cfg.MaxConnectionsPerSource = 64
	}
	if cfg.AnonymousRequestsPerSource == 0 {
		cfg.AnonymousRequestsPerSource = 100
	}
	return cfg
}

// authenticateClient authenticates the caller as an active OAuthClient with
// client_secret_basic (RFC 6749 §2.3.1, form-urlencoded id and secret) or
// client_secret_post, as the client allows, or, for a public client, by its
// client_id alone (method none: what proves it is the PKCE verifier of its code or
// its refresh token). Each endpoint decides whether it serves public clients
// (publicRefused). It returns the digest of the secret presented with the client.
func (s *Server) authenticateClient(r *http.Request, form url.Values, now time.Time) (*index.Client, index.Digest, *oauth.Error) {
	id, secret, basic := oauth.BasicCredentials(r)
	if basic {
		if form.Has("client_secret") {
			return nil, index.Digest{}, oauth.ErrInvalidRequest("use one client authentication method, not both")
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, index.Digest{}, oauth.ErrInvalidClient
		}
		if formID := form.Get("client_id"); formID != "" && formID != id {
			return nil, index.Digest{}, oauth.ErrInvalidRequest("client_id in the body does not match the Authorization header")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
		if id == "" {
			return nil, index.Digest{}, oauth.ErrInvalidClient
		}
	}
	presented := index.DigestOf(secret)   // hashed even for an unknown id: no timing difference to probe
	client, _ := s.index.LookupClient(id) // a duplicated client_id finds none (reported once by the index)
	if client == nil || !client.Active(now) {
		return nil, index.Digest{}, oauth.ErrInvalidClient
	}
	if client.Public {
		// A public client has no secret; one that sends a secret is misconfigured.
		if basic || secret != "" {
			return nil, index.Digest{}, oauth.ErrInvalidClient
		}
	} else if secret == "" || !client.SecretMatches(presented, now) || (basic && !client.Basic) || (!basic && !client.Post) {
		return nil, index.Digest{}, oauth.ErrInvalidClient
	}
	// Last use is recorded by the caller once the request is served: a refused
	// grant type or scope is not a use of the credential.
	return client, presented, nil
}

// instrument counts and times each request by endpoint and outcome.
func (s *Server) instrument(endpoint string, h http.HandlerFunc) http.Handler {
	m := s.metrics.forEndpoint(endpoint)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h(rec, r)
		m.observe(rec.status, time.Since(start))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection (a read deadline).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// EnableThirdPartyApps serves the authorization_code flow (package thirdparty):
// it starts discovering the upstream provider and watching the workspaces.
func (s *Server) EnableThirdPartyApps(ctx context.Context, o thirdparty.Options) error {
	tp, err := thirdparty.New(ctx, thirdparty.Host{
		Index: s.index, Clock: s.clock, Log: s.log, IssuerURL: s.cfg.IssuerURL,
		Sealer: s.keys.sealer, Sign: s.sign, Verify: s.verify,
		WithIO: s.withIO, SourceAddr: s.sourceAddr, UpstreamCalls: s.metrics.upstreamCalls,
	}, o)
	if err != nil {
		return err
	}
	s.thirdParty = tp
	s.tokenGrants = s.grants()
	return s.renderMetadata()
}
