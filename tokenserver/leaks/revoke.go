package leaks

import (
	"encoding/json"
	"net/http"
	"strings"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

const (
	// MaxRevokeBytes bounds a revocation request's body.
	MaxRevokeBytes = 128 << 10
	// MaxRevokeCredentials bounds the credentials of one revocation request, as
	// GitHub's credential revocation API does.
	MaxRevokeCredentials = 1000
)

// HandleRevoke answers POST /credentials/revoke: {"credentials": [...]}, each an
// API key or an OAuth client's "client_id:client_secret". It is answered 204
// whatever was found, so that the endpoint tells no one whether a string is a
// live credential; the credentials that are live are handled as a report of
// reporter "self" (no URL: a self-report proves only that the caller holds it).
func (s *Server) HandleRevoke(w http.ResponseWriter, _ *http.Request, body []byte) {
	var req struct {
		Credentials []string `json:"credentials"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Credentials) == 0 || len(req.Credentials) > MaxRevokeCredentials {
		oauth.WriteError(w, oauth.ErrInvalidRequest(`the body is not {"credentials": [...]} with 1 to %d credentials`, MaxRevokeCredentials))
		return
	}
	for _, c := range req.Credentials {
		// A dropped report is not said either: only the credential's holder sends
		// this, and a different answer would tell anyone whether a string is live.
		s.check(c, latchkeyv1.ReporterSelf, "", "")
	}
	w.WriteHeader(http.StatusNoContent)
}

// check handles one reported token: the checksum (or the client_id and secret's
// shape) first, so that a malformed token costs no lookup; then one lookup in
// the index. A credential accepted now is queued to be recorded, unless it was
// reported before. It never writes the token anywhere.
func (s *Server) check(token, reporter, url, source string) checked {
	t, ok := s.lookup(token)
	result := "not_accepted"
	switch {
	case !ok && t.kind == "":
		result = "malformed"
	case !ok:
	case t.reported:
		result = "known"
	default:
		if strings.Contains(url, token) {
			url = "" // a URL that holds the credential must not reach status or Events
		}
		switch s.recorder.add(t.target, s.newRecord(reporter, url, source, t.hash)) {
		case queued:
			result = "recorded"
		case alreadyQueued:
			result = "known" // queued, or written a moment ago, by another report
		case queueFull:
			result = "dropped"
		}
	}
	s.metrics.tokens.WithLabelValues(reporter, result).Inc()
	return checked{live: ok, dropped: result == "dropped"}
}

// checked is what check found of one token.
type checked struct {
	// live: a credential accepted now.
	live bool
	// dropped: live, not recorded before, and not queued now because its
	// namespace's queue is full: a scanner is asked to send the report again.
	dropped bool
}

// lookedUp is a token as the index knows it.
type lookedUp struct {
	target
	reported bool
}

// lookup finds the credential a token is; ok when it is accepted now. kind is
// empty for a token that is no Latchkey credential at all.
func (s *Server) lookup(token string) (t lookedUp, ok bool) {
	now := s.host.Clock.Now()
	if _, err := credential.ParseAPIKey(token); err == nil {
		t.kind = index.KindAPIKey
		d := index.DigestOf(token)
		key, found := s.host.Index.LookupAPIKey(d)
		if !found || !key.AcceptedAt(now) {
			return t, false
		}
		t.ref, t.hash, t.reported = key.Ref, credential.HashOfDigest(d[:]), key.Reported
		return t, true
	}
	// An OAuth client's secret is 64 hex characters: no scanner can tell it from
	// any other hex string, so it is reported with its client_id.
	id, secret, found := strings.Cut(token, ":")
	if !found || !credential.ValidClientID(id) || !credential.ValidClientSecret(secret) {
		return t, false
	}
	t.kind = index.KindOAuthClient
	client, found := s.host.Index.LookupClient(id)
	if !found || !client.Active(now) || client.Public {
		return t, false
	}
	d := index.DigestOf(secret)
	matches, reported := client.SecretReported(d, now)
	if !matches {
		return t, false
	}
	t.ref, t.hash, t.reported = client.Ref, credential.HashOfDigest(d[:]), reported
	return t, true
}
