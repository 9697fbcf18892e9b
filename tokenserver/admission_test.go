package tokenserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/flowcontrol"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// TestAClientChangedWhileItWaitsForASeatIsJudgedAgain plays a client whose
// request waits for a seat (every seat held) while its OAuthClient changes: it
// was authenticated on arrival, and a revocation during the wait must still
// refuse it (revoked at once), while a change that leaves it valid does not.
func TestAClientChangedWhileItWaitsForASeatIsJudgedAgain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *latchkeyv1.OAuthClient)
		want   int
	}{
		{"unchanged", nil, http.StatusOK},
		{"revoked", func(c *latchkeyv1.OAuthClient) { c.Spec.Revoked = true }, http.StatusUnauthorized},
		{"expired", func(c *latchkeyv1.OAuthClient) { c.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(-time.Second)} }, http.StatusUnauthorized},
		{"its secret replaced", func(c *latchkeyv1.OAuthClient) {
			other, _ := credential.NewClientSecret(rand.Reader)
			c.Status.Credentials[0].Hash = credential.Hash(other)
		}, http.StatusUnauthorized},
		{"its secret past its overlap", func(c *latchkeyv1.OAuthClient) {
			c.Status.Credentials[0].NotAfter = &metav1.Time{Time: time.Now().Add(-time.Second)}
		}, http.StatusUnauthorized},
		{"changed, still valid", func(c *latchkeyv1.OAuthClient) { c.Spec.Scopes = append(c.Spec.Scopes, "leads:write") }, http.StatusOK},
	} {
		for _, endpoint := range []struct{ path, body string }{
			{"/oauth2/token", "grant_type=client_credentials"},
			{"/oauth2/introspect", "token=lk_live_unknown"},
		} {
			t.Run(tc.name+endpoint.path, func(t *testing.T) {
				s, _, id, secret := benchServer(t, signingkeys.EdDSA, 1)
				h := s.Handler()
				held := holdEverySeat(t, s)
				answered := make(chan *httptest.ResponseRecorder, 1)
				go func() { answered <- post(h, endpoint.path, endpoint.body, id, secret) }()
				waitForAWaitingRequest(s)
				if tc.change != nil {
					client := benchClient(secret)
					tc.change(client)
					s.index.UpsertClient(client)
				}
				for _, seat := range held {
					seat.Done()
				}
				expectAnswer(t, <-answered, tc.want)
			})
		}
	}
}

// TestASecretWhoseOverlapEndsWhileItWaitsIsRefused: the client's record does not
// change, but the secret it presented stops being accepted during the wait.
func TestASecretWhoseOverlapEndsWhileItWaitsIsRefused(t *testing.T) {
	s, _, id, secret := benchServer(t, signingkeys.EdDSA, 1)
	notAfter := time.Now().Add(100 * time.Millisecond) // well within the longest wait for a seat (OverloadWait, 250 ms)
	client := benchClient(secret)
	client.Status.Credentials[0].NotAfter = &metav1.Time{Time: notAfter}
	s.index.UpsertClient(client)
	held := holdEverySeat(t, s)
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() { answered <- post(s.Handler(), "/oauth2/token", "grant_type=client_credentials", id, secret) }()
	waitForAWaitingRequest(s)
	time.Sleep(time.Until(notAfter) + 10*time.Millisecond)
	for _, seat := range held {
		seat.Done()
	}
	expectAnswer(t, <-answered, http.StatusUnauthorized)
}

func holdEverySeat(t *testing.T, s *Server) []*flowcontrol.Seat {
	t.Helper()
	var held []*flowcontrol.Seat
	for range s.cfg.ConcurrentRequests {
		seat, err := s.cpu.Acquire(context.Background(), "holder")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, seat)
	}
	return held
}

func waitForAWaitingRequest(s *Server) {
	for s.cpu.Stats().Waiting == 0 {
		time.Sleep(time.Millisecond)
	}
}

// expectAnswer fails t unless rec has status want (and, for 401, the error
// invalid_client). It never prints the body: a token's answer holds a token.
func expectAnswer(t *testing.T, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	var body struct{ Error string }
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != want {
		t.Fatalf("status %d (error %q), want %d", rec.Code, body.Error, want)
	}
	if want == http.StatusUnauthorized && body.Error != "invalid_client" {
		t.Fatalf("error %q, want invalid_client", body.Error)
	}
}
