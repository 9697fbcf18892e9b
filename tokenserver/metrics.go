package tokenserver

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics never carry a credential: labels are endpoints and status codes only.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	rejected *prometheus.CounterVec
	// upstreamCalls counts the calls to the upstream provider's token endpoint.
	upstreamCalls *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_tokenserver_requests_total",
			Help: "Requests by endpoint and HTTP status code.",
		}, []string{"endpoint", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "latchkey_tokenserver_request_duration_seconds",
			Help:    "Request latency by endpoint.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"endpoint"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_tokenserver_rejected_requests_total",
			Help: "Requests refused before being served, by reason (queue_full: the caller's queue or all queues are full; wait: no seat within 250 ms; cpu: the caller had requests in while the scheduling latency was over --overload-scheduling-latency; canceled: the client left while waiting; io_*: the same for the API-server and upstream calls).",
		}, []string{"reason"}),
		upstreamCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_tokenserver_upstream_requests_total",
			Help: "Calls to the upstream OpenID provider's token endpoint, by call (exchange: a sign-in; revalidate: a refresh-token family's user confirmed).",
		}, []string{"call"}),
	}
	cacheSize := func(pick func(hashes, clients int) int) func() float64 {
		return func() float64 { return float64(pick(s.index.Sizes())) }
	}
	reg.MustRegister(m.requests, m.latency, m.rejected, m.upstreamCalls,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latchkey_tokenserver_cached_apikey_hashes", Help: "API key hashes accepted now.",
		}, cacheSize(func(h, _ int) int { return h })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latchkey_tokenserver_cached_oauthclients", Help: "OAuthClients in the cache.",
		}, cacheSize(func(_, c int) int { return c })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latchkey_tokenserver_cached_oauthgrants", Help: "OAuthGrants (third-party apps installed in workspaces) in the cache.",
		}, func() float64 { return float64(s.index.Grants()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latchkey_tokenserver_duplicate_credentials", Help: "Credentials claimed by more than one object, answered for by none.",
			ConstLabels: prometheus.Labels{"kind": "apikey_hash"},
		}, func() float64 { hashes, _ := s.index.Duplicates(); return float64(hashes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latchkey_tokenserver_duplicate_credentials", Help: "Credentials claimed by more than one object, answered for by none.",
			ConstLabels: prometheus.Labels{"kind": "client_id"},
		}, func() float64 { _, ids := s.index.Duplicates(); return float64(ids) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latchkey_tokenserver_signing_key_age_seconds", Help: "How long the current signing key has been signing.",
		}, func() float64 {
			age, _ := s.keys.ActiveAge(s.clock.Now())
			return age.Seconds()
		}),
	)
	return m
}

// endpointMetrics are one endpoint's series, resolved once: a label lookup
// hashes the labels and takes a lock, and strconv.Itoa(200) allocates, on
// every request otherwise.
type endpointMetrics struct {
	m        *metrics
	endpoint string
	latency  prometheus.Observer
	ok       prometheus.Counter // code 200, the common case
}

func (m *metrics) forEndpoint(endpoint string) *endpointMetrics {
	return &endpointMetrics{m: m, endpoint: endpoint, latency: m.latency.WithLabelValues(endpoint),
		ok: m.requests.WithLabelValues(endpoint, "200")}
}

func (e *endpointMetrics) observe(status int, d time.Duration) {
	if status == http.StatusOK {
		e.ok.Inc()
	} else {
		e.m.requests.WithLabelValues(e.endpoint, strconv.Itoa(status)).Inc()
	}
	e.latency.Observe(d.Seconds())
}
