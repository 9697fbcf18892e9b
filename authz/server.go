package authz

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchkey-dev/latchkey/internal/serve"
)

// Server serves the Authorizer over gRPC (Envoy ext_authz) and HTTP (forward-auth).
type Server struct {
	authorizer *Authorizer
	realm      string
	metrics    *metrics
	readiness  *serve.Readiness
}

// NewServer wraps an authorizer; realm is the WWW-Authenticate realm.
func NewServer(a *Authorizer, realm string, reg prometheus.Registerer) *Server {
	s := &Server{authorizer: a, realm: realm, readiness: &serve.Readiness{}}
	s.metrics = newMetrics(reg, a)
	return s
}

// SetReady marks the caches as synced: /readyz answers 200 from then on.
func (s *Server) SetReady() { s.readiness.MarkSynced() }

// Handler routes the HTTP endpoints. Forward-auth answers every method: Traefik
// and nginx may send the original one.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", s.readiness.Handler)
	// The decision endpoints are routed before the mux: it answers a path with
	// "//" or ".." with a redirect, and a decision must be 200, 401 or 403 (an
	// auth path that is not one parseAuthPath reads is refused there); and its
	// pattern matching cost each check allocations it has no use for.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch path := r.URL.EscapedPath(); { // as the mux matched it: "/authz%2Fapi/…" is not an auth path
		case strings.HasPrefix(r.RequestURI, EnvoyHTTPPrefix+"/"):
			s.handleEnvoyHTTP(w, r)
		case path == ForwardAuthPath || strings.HasPrefix(path, ForwardAuthPath+"/"):
			s.handleAuthPaths(w, r)
		default:
			mux.ServeHTTP(w, r)
		}
	})
}

// metrics never carry a credential or a per-credential label: decisions are
// counted by API and outcome only.
type metrics struct {
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	// byProtocol: latency's series, resolved once (a label lookup per check
	// hashes the label and takes a lock).
	byProtocol map[string]prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, a *Authorizer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_authz_decisions_total",
			Help: "Authorization decisions by API (namespace/name, empty when none applied) and outcome (allowed, no_credential, invalid_credential, wrong_environment, malformed, insufficient_scope, route_denied, bad_path, no_api, rate_limited).",
		}, []string{"api", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "latchkey_authz_check_duration_seconds",
			Help:    "Time to decide a check, by protocol (grpc, http).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1},
		}, []string{"protocol"}),
	}
	m.byProtocol = map[string]prometheus.Observer{"http": m.latency.WithLabelValues("http"), "grpc": m.latency.WithLabelValues("grpc")}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(m.decisions, m.latency,
		gauge("latchkey_authz_cached_apikey_hashes", "API key hashes accepted now.", func() float64 {
			hashes, _ := a.Index.Sizes()
			return float64(hashes)
		}),
		gauge("latchkey_authz_cached_oauthclients", "OAuthClients in the cache.", func() float64 {
			_, clients := a.Index.Sizes()
			return float64(clients)
		}),
		gauge("latchkey_authz_served_apis", "APIs served (holding their identifier and hosts).", func() float64 {
			_, served := a.Index.APIs()
			return float64(served)
		}),
		gauge("latchkey_authz_jwks_keys", "Public keys loaded from the JWKS ConfigMap.", func() float64 {
			return float64(a.Keys.Verifier().Size())
		}),
	)
	if a.Limits != nil {
		reg.MustRegister(
			gauge("latchkey_authz_rate_limit_budgets", "Rate limit budgets (credential × API × rule) counted now.", func() float64 {
				return float64(a.Limits.Budgets())
			}),
			gauge("latchkey_authz_rate_limit_replicas", "Replicas sharing each rate limit (the ready endpoints of --rate-limit-service).", func() float64 {
				return float64(a.Limits.Replicas())
			}),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "latchkey_authz_rate_limit_no_room_total",
				Help: "Requests refused (429) because a new rate limit budget found no room: --max-rate-limit-budgets in all, or --max-rate-limit-budgets-per-namespace for their credential's namespace, were in use."}, func() float64 {
				return float64(a.Limits.Refused())
			}),
		)
	}
	return m
}

func (m *metrics) observe(protocol string, d Decision, took time.Duration) {
	m.decisions.WithLabelValues(d.API, string(d.Outcome)).Inc()
	m.byProtocol[protocol].Observe(took.Seconds())
}
