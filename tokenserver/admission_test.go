package tokenserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/flowcontrol"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// clientChanges are what may happen to the client while its request waits, and
// the answer each must then get.
var clientChanges = []struct {
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
}

// TestAClientChangedWhileItWaitsForASeatIsJudgedAgain plays a client whose
// request waits for a seat (every seat held) while its OAuthClient changes: it
// was authenticated on arrival, and a revocation during the wait must still
// refuse it (revoked at once), while a change that leaves it valid does not.
func TestAClientChangedWhileItWaitsForASeatIsJudgedAgain(t *testing.T) {
	for _, tc := range clientChanges {
		for _, endpoint := range []struct{ path, body string }{
			{"/oauth2/token", "grant_type=client_credentials"},
			{"/oauth2/introspect", "token=lk_live_unknown"},
		} {
			t.Run(tc.name+endpoint.path, func(t *testing.T) {
				s, _, id, secret := waitingServer(t, clock.RealClock{})
				h := s.Handler()
				held := holdEverySeat(t, s)
				answered := make(chan *httptest.ResponseRecorder, 1)
				go func() { answered <- post(h, endpoint.path, endpoint.body, id, secret) }()
				waitForAWaitingRequest(t, s)
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
	clk := clocktesting.NewFakeClock(time.Now())
	s, _, id, secret := waitingServer(t, clk)
	client := benchClient(secret)
	client.Status.Credentials[0].NotAfter = &metav1.Time{Time: clk.Now().Add(time.Second)}
	s.index.UpsertClient(client)
	held := holdEverySeat(t, s)
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() { answered <- post(s.Handler(), "/oauth2/token", "grant_type=client_credentials", id, secret) }()
	waitForAWaitingRequest(t, s) // authenticated on arrival: the secret was still accepted then
	clk.Step(2 * time.Second)
	for _, seat := range held {
		seat.Done()
	}
	expectAnswer(t, <-answered, http.StatusUnauthorized)
}

// waitingServer is benchServer with a wait for a seat long enough that no
// request of these tests is shed while it waits, whatever the machine's pace.
func waitingServer(t *testing.T, clk clock.PassiveClock) (*Server, []string, string, string) {
	return benchServerWith(t, signingkeys.EdDSA, 1, Config{OverloadWait: time.Minute}, clk)
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

// waitForAWaitingRequest returns once a request waits for a seat.
func waitForAWaitingRequest(t *testing.T, s *Server) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); s.cpu.Stats().Waiting == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no request waits for a seat after 30 s")
		}
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

// ioGrant stands for a grant that does I/O (authorization_code, refresh): its
// Issue blocks, as the API server's answer would, until released.
type ioGrant struct {
	issuing chan struct{} // closed when Issue is called
	release chan struct{}
}

func (ioGrant) Allowed(*index.Client) bool { return true }
func (ioGrant) PublicClients() bool        { return false }
func (ioGrant) DoesIO() bool               { return true }

func (g ioGrant) Issue(*http.Request, *index.Client, url.Values) (oauth.TokenResponse, *oauth.Error) {
	close(g.issuing)
	<-g.release
	return oauth.TokenResponse{AccessToken: "issued", TokenType: "Bearer", ExpiresIn: 3600}, nil
}

// TestAClientRevokedWhileItsGrantDoesIOGetsNothing: the token endpoint checks the
// client again once a grant that waited for the API server answers.
func TestAClientRevokedWhileItsGrantDoesIOGetsNothing(t *testing.T) {
	for _, tc := range clientChanges {
		t.Run(tc.name, func(t *testing.T) {
			s, _, id, secret := waitingServer(t, clock.RealClock{})
			grant := ioGrant{issuing: make(chan struct{}), release: make(chan struct{})}
			s.tokenGrants["urn:test:io"] = grant
			answered := make(chan *httptest.ResponseRecorder, 1)
			go func() { answered <- post(s.Handler(), "/oauth2/token", "grant_type=urn:test:io", id, secret) }()
			<-grant.issuing
			if tc.change != nil {
				client := benchClient(secret)
				tc.change(client)
				s.index.UpsertClient(client)
			}
			close(grant.release)
			expectAnswer(t, <-answered, tc.want)
		})
	}
}
