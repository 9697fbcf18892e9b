// Package leaks answers reports that a Latchkey credential was found public, so
// that a leaked key stops working without a person in the loop:
//
//   - POST /secret-scanning/{reporter}: a secret scanner's signed report, in the
//     format of GitHub's secret scanning partner program (report.go);
//   - POST /credentials/revoke: anyone holding a credential reports it with the
//     credential alone, as GitHub's credential revocation API allows (revoke.go).
//
// A reported token costs a checksum, a hash and a map lookup in the watch-fed
// index; only a credential that is accepted now, and not reported before, is
// recorded, by one status write on its object (record.go). The manager then acts
// on it as spec.leakResponse says (controllers/leak.go). Nothing here reads a
// Secret or writes a plaintext anywhere.
package leaks

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/index"
)

// Reporter is a secret scanner whose signed reports are accepted.
type Reporter struct {
	// Name is the reporter's path segment and status.leaks[].reporter ("github").
	Name string `json:"name"`
	// KeysURL serves the reporter's public keys, as GitHub's key list JSON
	// ({"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}). Fetched
	// at the first report, and again on an unknown key identifier at most once per
	// KeysRefreshInterval.
	KeysURL string `json:"keysURL,omitempty"`
	// KeysFile is the same list, read from a file once at start (instead of KeysURL).
	KeysFile string `json:"keysFile,omitempty"`
	// HeaderPrefix names the signature headers: <prefix>-Identifier and
	// <prefix>-Signature ("Github-Public-Key"; deps.dev sends "GOSST-PUBLIC-KEY").
	HeaderPrefix string `json:"headerPrefix,omitempty"`
	// Feedback answers a report with the verdict on each token (GitHub's
	// true_positive / false_positive) instead of 204 without a body.
	Feedback bool `json:"feedback,omitempty"`
}

// GitHub is GitHub's secret scanning partner program.
var GitHub = Reporter{
	Name:         "github",
	KeysURL:      "https://api.github.com/meta/public_keys/secret_scanning",
	HeaderPrefix: "Github-Public-Key",
}

// Options configure the endpoints.
type Options struct {
	Reporters []Reporter `json:"reporters"`
	// KeysRefreshInterval bounds the fetches of a reporter's keys that unknown key
	// identifiers cause (anyone can send one): once per interval at most.
	KeysRefreshInterval time.Duration `json:"-"`
	// HTTPClient fetches the keys; one with a 10 s timeout when nil.
	HTTPClient *http.Client `json:"-"`
}

// Host is what the token server lends the endpoints.
type Host struct {
	Index *index.Index
	// Writer writes status.leaks (uncached: one read and one patch per credential
	// recorded).
	Writer   client.Client
	Clock    clock.PassiveClock
	Log      logr.Logger
	Registry prometheus.Registerer
	// WithIO runs a request's upstream call (a reporter's key list) in the token
	// server's I/O seats.
	WithIO func(r *http.Request, fn func(context.Context) error) error
}

// Server serves both endpoints.
type Server struct {
	host      Host
	reporters map[string]*reporter
	recorder  *recorder
	metrics   *metrics
}

var reporterName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// New checks the options and reads any key files. Run must be started for
// reports to be recorded.
func New(h Host, o Options) (*Server, error) {
	if o.KeysRefreshInterval <= 0 {
		o.KeysRefreshInterval = time.Minute
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Server{host: h, reporters: map[string]*reporter{}, metrics: newMetrics(h.Registry)}
	for _, r := range o.Reporters {
		switch {
		case !reporterName.MatchString(r.Name) || r.Name == latchkeyv1.ReporterSelf:
			return nil, fmt.Errorf("secret scanning reporter %q: a name is a DNS label, and not %q", r.Name, latchkeyv1.ReporterSelf)
		case s.reporters[r.Name] != nil:
			return nil, fmt.Errorf("secret scanning reporter %q is configured twice", r.Name)
		case (r.KeysURL == "") == (r.KeysFile == ""):
			return nil, fmt.Errorf("secret scanning reporter %q: set one of keysURL and keysFile", r.Name)
		}
		if r.HeaderPrefix == "" {
			r.HeaderPrefix = GitHub.HeaderPrefix
		}
		if !httpguts.ValidHeaderFieldName(r.HeaderPrefix + "-Identifier") {
			// Such a header never arrives: every report would be refused as unsigned.
			return nil, fmt.Errorf("secret scanning reporter %q: headerPrefix %q does not begin an HTTP header name", r.Name, r.HeaderPrefix)
		}
		rep, err := newReporter(r, o, h.Clock, s.metrics)
		if err != nil {
			return nil, err
		}
		s.reporters[r.Name] = rep
	}
	s.recorder = newRecorder(h, s.metrics)
	return s, nil
}

// metrics never carry a token or a hash: reporters and outcomes only.
type metrics struct {
	tokens    *prometheus.CounterVec
	records   *prometheus.CounterVec
	keyFetchs *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_tokenserver_leak_reported_tokens_total",
			Help: "Tokens reported public, by reporter (self: POST /credentials/revoke) and result (recorded: an accepted credential, recorded now; known: an accepted credential reported before; dropped: an accepted credential whose namespace's queue of records to write was full; not_accepted: well-formed, and not a credential accepted now; malformed: not a Latchkey credential).",
		}, []string{"reporter", "result"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_tokenserver_leak_records_total",
			Help: "Writes of a report into a credential's status.leaks, by result (written, gone: the credential was no longer accepted, failed).",
		}, []string{"result"}),
		keyFetchs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_tokenserver_secret_scanning_key_fetches_total",
			Help: "Fetches of a reporter's public keys, by reporter and result (ok, failed).",
		}, []string{"reporter", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.tokens, m.records, m.keyFetchs)
	}
	return m
}
