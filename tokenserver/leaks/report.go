package leaks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// MaxReportBytes bounds a scanner's report. GitHub sends a report per push, each
// token a few hundred bytes with its URL: 1 MiB is thousands of tokens.
const MaxReportBytes = 1 << 20

// maxReportTokens bounds the tokens of one report (a report this long is 1 MiB of
// minimal entries).
const maxReportTokens = 10000

// reportedToken is one element of a report, as GitHub's partner program sends it.
type reportedToken struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// feedback is one element of the optional answer: GitHub's format, with the
// token's SHA-256 (hex) rather than the token.
type feedback struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// reporter verifies the signatures of one scanner's reports.
type reporter struct {
	Reporter
	client   *http.Client
	clock    clock.PassiveClock
	interval time.Duration
	metrics  *metrics

	mu sync.Mutex
	// keys by identifier; replaced whole by a fetch.
	keys map[string]*ecdsa.PublicKey
	// fetchedAt is when the list was last fetched successfully, triedAt when a
	// fetch was last started; fetching is closed when the running fetch ends
	// (nil when none runs).
	fetchedAt, triedAt time.Time
	fetching           chan struct{}
}

func newReporter(r Reporter, o Options, clk clock.PassiveClock, m *metrics) (*reporter, error) {
	rep := &reporter{Reporter: r, client: o.HTTPClient, clock: clk, interval: o.KeysRefreshInterval, metrics: m}
	if r.KeysFile != "" {
		data, err := os.ReadFile(r.KeysFile)
		if err != nil {
			return nil, fmt.Errorf("secret scanning reporter %q: %w", r.Name, err)
		}
		if rep.keys, err = parseKeyList(data); err != nil {
			return nil, fmt.Errorf("secret scanning reporter %q: %s: %w", r.Name, r.KeysFile, err)
		}
	}
	return rep, nil
}

// errKeysUnavailable: the reporter's keys could not be fetched (or not yet
// again); the report is answered 503, and the reporter sends it again.
var errKeysUnavailable = errors.New("the reporter's public keys are unavailable")

// keyFetchTimeout bounds one fetch of a key list.
const keyFetchTimeout = 10 * time.Second

// key returns the public key named id: nil when the reporter has no such key.
// An identifier missing from a list older than the interval starts a fetch, at
// most one per interval whoever sends them (anyone can send an unknown one). The
// fetch runs on its own, with its own deadline, so that no caller can cancel it
// nor hold the reporter's other reports behind it; the caller waits for it in an
// I/O seat (withIO).
func (r *reporter) key(req *http.Request, id string, withIO func(*http.Request, func(context.Context) error) error) (*ecdsa.PublicKey, error) {
	r.mu.Lock()
	if k, ok := r.keys[id]; ok || r.KeysURL == "" {
		r.mu.Unlock()
		if !ok && r.keys == nil {
			return nil, errKeysUnavailable
		}
		return k, nil
	}
	now := r.clock.Now()
	if !r.fetchedAt.IsZero() && now.Sub(r.fetchedAt) < r.interval {
		r.mu.Unlock()
		return nil, nil // the list is fresh: the reporter has no such key
	}
	done := r.fetching
	if done == nil {
		if !r.triedAt.IsZero() && now.Sub(r.triedAt) < r.interval {
			r.mu.Unlock()
			return nil, errKeysUnavailable // the last fetch failed a moment ago
		}
		r.triedAt = now
		done = make(chan struct{})
		r.fetching = done
		go r.refresh(done)
	}
	r.mu.Unlock()
	err := withIO(req, func(ctx context.Context) error {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.keys[id]
	switch {
	case ok:
		return k, nil
	case err != nil || r.fetchedAt.Before(r.triedAt):
		return nil, errKeysUnavailable
	}
	return nil, nil
}

// refresh fetches the key list and closes done.
func (r *reporter) refresh(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), keyFetchTimeout)
	defer cancel()
	keys, err := r.fetch(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.keys, r.fetchedAt = keys, r.clock.Now()
		r.metrics.keyFetchs.WithLabelValues(r.Name, "ok").Inc()
	} else {
		r.metrics.keyFetchs.WithLabelValues(r.Name, "failed").Inc()
	}
	r.fetching = nil
	close(done)
}

// maxKeyListBytes bounds the key list read from the reporter.
const maxKeyListBytes = 1 << 20

func (r *reporter) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.KeysURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", r.KeysURL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxKeyListBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyListBytes {
		return nil, fmt.Errorf("GET %s: the key list is over %d bytes", r.KeysURL, maxKeyListBytes)
	}
	return parseKeyList(data)
}

// parseKeyList reads GitHub's key list: {"public_keys": [{"key_identifier",
// "key" (a PEM public key), "is_current"}]}. Keys that are not ECDSA P-256 are
// an error: a list this server cannot use is misconfiguration to see at once.
func parseKeyList(data []byte) (map[string]*ecdsa.PublicKey, error) {
	var list struct {
		PublicKeys []struct {
			KeyIdentifier string `json:"key_identifier"`
			Key           string `json:"key"`
		} `json:"public_keys"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("not a key list: %w", err)
	}
	if len(list.PublicKeys) == 0 {
		return nil, errors.New("the key list holds no public_keys")
	}
	keys := make(map[string]*ecdsa.PublicKey, len(list.PublicKeys))
	for _, k := range list.PublicKeys {
		block, _ := pem.Decode([]byte(k.Key))
		if block == nil || k.KeyIdentifier == "" {
			return nil, fmt.Errorf("key %q: no key_identifier, or no PEM key", k.KeyIdentifier)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.KeyIdentifier, err)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("key %q is not an ECDSA P-256 key", k.KeyIdentifier)
		}
		keys[k.KeyIdentifier] = ec
	}
	return keys, nil
}

// maxSignatureHeaderBytes bounds the headers read before a signature is checked.
const maxSignatureHeaderBytes = 512

// verify checks the report's signature: <prefix>-Identifier names the key,
// <prefix>-Signature is base64 of an ASN.1 ECDSA signature over SHA-256 of the
// raw body.
func (r *reporter) verify(req *http.Request, body []byte, withIO func(*http.Request, func(context.Context) error) error) error {
	id := req.Header.Get(r.HeaderPrefix + "-Identifier")
	sig64 := req.Header.Get(r.HeaderPrefix + "-Signature")
	if id == "" || sig64 == "" || len(id) > maxSignatureHeaderBytes || len(sig64) > maxSignatureHeaderBytes {
		return errBadSignature
	}
	sig, err := base64.StdEncoding.DecodeString(sig64)
	if err != nil {
		return errBadSignature
	}
	key, err := r.key(req, id, withIO)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(body)
	if key == nil || !ecdsa.VerifyASN1(key, digest[:], sig) {
		return errBadSignature
	}
	return nil
}

var errBadSignature = errors.New("the report's signature does not verify")

// HandleReport answers POST /secret-scanning/{reporter}: a signed report in GitHub's
// partner format, a JSON array of {token, type, url, source}. The body is read
// by the caller (tokenserver's leak framing), at most MaxReportBytes. A bad
// signature or shape is 400; otherwise 204 without saying what was found, or,
// with Feedback, 200 and each token's label.
func (s *Server) HandleReport(w http.ResponseWriter, r *http.Request, body []byte) {
	rep := s.reporters[r.PathValue("reporter")]
	if rep == nil {
		oauth.WriteError(w, oauth.NewError(http.StatusNotFound, "not_found", "no such secret scanning reporter"))
		return
	}
	switch err := rep.verify(r, body, s.host.WithIO); {
	case errors.Is(err, errKeysUnavailable):
		w.Header().Set("Retry-After", "60")
		oauth.WriteError(w, oauth.NewError(http.StatusServiceUnavailable, "temporarily_unavailable", "the reporter's public keys could not be fetched; retry later"))
		return
	case err != nil:
		oauth.WriteError(w, oauth.NewError(http.StatusBadRequest, "invalid_signature", "the report's signature does not verify with the reporter's public keys"))
		return
	}
	var tokens []reportedToken
	if err := json.Unmarshal(body, &tokens); err != nil || len(tokens) > maxReportTokens {
		oauth.WriteError(w, oauth.ErrInvalidRequest("the body is not a JSON array of at most %d {token, type, url, source}", maxReportTokens))
		return
	}
	answer := []feedback{} // "[]", never "null", for an empty report
	dropped := false
	for _, t := range tokens {
		c := s.check(t.Token, rep.Name, bounded(t.URL, maxURLLength), bounded(t.Source, maxSourceLength))
		dropped = dropped || c.dropped
		if rep.Feedback {
			sum := sha256.Sum256([]byte(t.Token))
			label := "false_positive"
			if c.live {
				label = "true_positive"
			}
			answer = append(answer, feedback{TokenHash: hex.EncodeToString(sum[:]), TokenType: t.Type, Label: label})
		}
	}
	if dropped {
		// A live credential could not be queued: the reporter (who signed the
		// report, so learns nothing it did not know) sends it again; the tokens
		// recorded now are known then, and cost nothing.
		w.Header().Set("Retry-After", "60")
		oauth.WriteError(w, oauth.NewError(http.StatusServiceUnavailable, "temporarily_unavailable", "the report could not be recorded whole; send it again later"))
		return
	}
	if !rep.Feedback {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	oauth.WriteJSON(w, http.StatusOK, answer)
}

// Bounds of what a report may put in status.leaks (the CRD's own bounds).
const (
	maxURLLength    = 2048
	maxSourceLength = 64
)

// bounded keeps what fits status.leaks (at most n printable ASCII characters),
// else nothing. A URL is only ever shown, never fetched.
func bounded(s string, n int) string {
	if len(s) > n || !isPrintableASCII(s) {
		return ""
	}
	return s
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
