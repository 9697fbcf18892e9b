package tokenserver

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics never carry a credential: labels are endpoints and status codes only.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	rejected *prometheus.CounterVec
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
			Help: "Requests refused before being served, by reason (overload: no slot within --max-requests-in-flight; cpu: scheduling latency over --overload-scheduling-latency; canceled: the client left while waiting).",
		}, []string{"reason"}),
	}
	cacheSize := func(pick func(hashes, clients int) int) func() float64 {
		return func() float64 { return float64(pick(s.index.Sizes())) }
	}
	reg.MustRegister(m.requests, m.latency, m.rejected,
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

func (m *metrics) observe(endpoint string, status int, d time.Duration) {
	m.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(endpoint).Observe(d.Seconds())
}
