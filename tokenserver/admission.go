package tokenserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/latchkey-dev/latchkey/internal/flowcontrol"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// Admission: who may take the server's CPU, and its API-server and upstream I/O,
// and how much of it.
//
// Every request is served in a seat of the CPU limiter (flowcontrol), queued by
// flow: the client_id of a client that proved its secret, or else the source
// address (a public client's client_id proves nothing: anyone can send it). So a
// caller's flood waits behind itself and is shed from its own queue.
//
// A request that must read or write the API server, or call the upstream
// provider, first proves possession of something the watch-fed index already
// knows (a client's secret, a live refresh-token family, a sealed code or login)
// and then gives its CPU seat up and takes a seat of the I/O limiter, by the same
// flow, with a deadline: the I/O of a few callers can never hold the seats that
// client_credentials, introspection and the JWKS need.

// oauthCall is what every OAuth endpoint (token, introspection, revocation) reads
// before it is served: the parameters and who the caller is.
type oauthCall struct {
	// params are the request's, pooled (oauth.ReadParams): their values may be
	// kept, but neither the map nor a slice of it, past the handler's return.
	params url.Values
	// client authenticated by its secret or, for a public client, by its
	// client_id alone: each endpoint decides whether it serves public clients.
	// nil when authentication failed, with authErr.
	client  *index.Client
	authErr *oauth.Error
	// presented is the digest of the secret client was authenticated with.
	presented index.Digest
	// now is the request's time once it holds its seat: what the credential it
	// presents, and its client, are judged at (the client's secret is hashed on
	// arrival; authenticatedAgain).
	now time.Time
	// flow and seat are its place in the limiters (withAdmission).
	flow string
	seat *flowcontrol.Seat
}

// withAdmission is r carrying the call's place in the limiters, for a handler
// that reads or writes the API server or calls the upstream provider (withIO).
// Only those copy the request (make bench: the copy was a fifth of
// introspection's allocations).
func (c oauthCall) withAdmission(r *http.Request) *http.Request {
	return withAdmission(r, c.flow, c.seat)
}

// oauthEndpoint frames an OAuth endpoint. The body is read, and the caller
// authenticated, before a seat is taken: slow uploads hold none, and the flow the
// request queues in is the caller's. Once seated, the caller's client is checked
// again: one revoked during the wait is refused, as at once as any other.
func (s *Server) oauthEndpoint(repeatable []string, h func(http.ResponseWriter, *http.Request, oauthCall)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		params, release, perr := oauth.ReadParams(w, r, s.cfg.MaxBodyBytes, repeatable...)
		defer release.Release() // the handlers read params' values; none keeps the map
		call := oauthCall{params: params}
		if perr == nil {
			call.client, call.presented, call.authErr = s.authenticateClient(r, params, s.clock.Now())
		}
		if call.client != nil && !call.client.Public {
			// Its client_id (24 hex digits: no source's flow, "addr:…", is spelled so).
			call.flow = call.client.ClientID
		} else if call.flow = s.sourceFlow(r); !s.anonymousBudgetLeft(w, r) {
			return
		}
		var ok bool
		if call.seat, ok = s.seat(w, r, call.flow); !ok {
			return
		}
		defer call.seat.Done()
		call.now = s.clock.Now() // after the wait for a seat: a key that expired meanwhile is refused
		// Its client is judged again after the wait (up to OverloadWait).
		if call.client != nil {
			call.client, call.presented, call.authErr = s.authenticatedAgain(r, call)
		}
		if perr != nil {
			oauth.WriteError(w, perr)
			return
		}
		h(w, r, call)
	}
}

// authenticatedAgain is call's client, authenticated earlier, judged at
// call.now: revoked, expired, its secret rotated out or its object changed
// since, it is authenticated again. While the index still holds the very record
// authenticated, still active and still accepting the presented secret, that is
// a map lookup and a comparison, not a second parse and hash for every request
// that waited.
func (s *Server) authenticatedAgain(r *http.Request, call oauthCall) (*index.Client, index.Digest, *oauth.Error) {
	current, _ := s.index.LookupClient(call.client.ClientID)
	if current == call.client && current.Active(call.now) &&
		(current.Public || current.SecretMatches(call.presented, call.now)) {
		return call.client, call.presented, nil
	}
	return s.authenticateClient(r, call.params, call.now)
}

// browserEndpoint frames a page of the authorization_code flow: its flow is the
// source address (no one has proven anything yet, or only a sealed cookie).
func (s *Server) browserEndpoint(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.anonymousBudgetLeft(w, r) {
			s.admitted(w, r, s.sourceFlow(r), h)
		}
	}
}

// anonymousBudgetLeft takes a request that has proven nothing (no client
// secret) from its source address's budget (Config.AnonymousRequestsPerSource),
// or sheds it: such requests are cheap one by one, but a flood of them costs the
// server a read, a parse and an answer each before any other limit sees them.
func (s *Server) anonymousBudgetLeft(w http.ResponseWriter, r *http.Request) bool {
	if s.anonymous == nil {
		return true
	}
	if ok, _ := s.anonymous.Allow(s.sourceAddr(r), s.clock.Now()); ok {
		return true
	}
	s.shed(w, r, errAnonymousBudget)
	return false
}

// errAnonymousBudget: the source has sent more requests that prove nothing than
// its budget.
var errAnonymousBudget = errors.New("the source's budget of anonymous requests is spent")

// admitted serves h in a seat of flow, or sheds the request. h may call withIO.
func (s *Server) admitted(w http.ResponseWriter, r *http.Request, flow string, h http.HandlerFunc) {
	seat, ok := s.seat(w, r, flow)
	if !ok {
		return
	}
	defer seat.Done()
	h(w, withAdmission(r, flow, seat))
}

// seat takes a seat of flow for r, or sheds it (false). The caller gives the
// seat back (seat.Done).
func (s *Server) seat(w http.ResponseWriter, r *http.Request, flow string) (*flowcontrol.Seat, bool) {
	seat, err := s.cpu.Acquire(r.Context(), flow)
	if err != nil {
		s.shed(w, r, err)
		return nil, false
	}
	return seat, true
}

// withAdmission is r carrying its place in the limiters, for withIO.
func withAdmission(r *http.Request, flow string, seat *flowcontrol.Seat) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), admissionKey{}, &admission{flow: flow, seat: seat}))
}

type admissionKey struct{}

// admission is a request's place in the limiters.
type admission struct {
	flow string
	seat *flowcontrol.Seat
}

// errIOBusy answers a request whose I/O found no seat in time.
var errIOBusy = errors.New("the server's API-server and upstream I/O is saturated")

// withIO runs fn, which reads or writes the API server or calls the upstream
// provider, in a seat of the I/O limiter (by the request's flow), with a deadline.
// The request gives its CPU seat up first, for good (it is still in, for its
// flow's share): what it does after its I/O (at most a signature) is bounded by
// the I/O seats. errIOBusy when no I/O seat
// frees up in time.
func (s *Server) withIO(r *http.Request, fn func(context.Context) error) error {
	a, _ := r.Context().Value(admissionKey{}).(*admission)
	if a == nil {
		// An OAuth handler that does I/O passes call.withAdmission(r).
		panic("tokenserver: withIO on a request without its admission")
	}
	a.seat.Release()
	seat, err := s.io.Acquire(r.Context(), a.flow)
	if err != nil {
		s.metrics.rejected.WithLabelValues("io_" + shedReason(err)).Inc()
		return errIOBusy
	}
	defer seat.Done()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.IOTimeout)
	defer cancel()
	return fn(ctx)
}

// shedReason is the metrics label of a shed request.
func shedReason(err error) string {
	switch {
	case errors.Is(err, errAnonymousBudget):
		return "anonymous_budget"
	case errors.Is(err, flowcontrol.ErrQueueFull):
		return "queue_full"
	case errors.Is(err, flowcontrol.ErrOverloaded):
		return "cpu"
	case errors.Is(err, flowcontrol.ErrWaitedTooLong):
		return "wait"
	}
	return "canceled"
}

// shed answers 503 with Retry-After. A request shed because its own flow is full
// or busy while the CPU is behind is answered only after ShedDelay: a flood over
// keep-alive connections then sends a request per connection per ShedDelay, and
// each costs a read and a parse before any limit can see it. Other callers' flows
// are never delayed.
func (s *Server) shed(w http.ResponseWriter, r *http.Request, err error) {
	reason := shedReason(err)
	s.metrics.rejected.WithLabelValues(reason).Inc()
	if (reason == "queue_full" || reason == "cpu" || reason == "anonymous_budget") && s.cfg.ShedDelay > 0 {
		timer := time.NewTimer(s.cfg.ShedDelay)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
		}
	}
	w.Header().Set("Retry-After", "1")
	oauth.WriteError(w, errOverloaded)
}

// errOverloaded is the answer to a shed request (RFC 6749 §4.1.2.1's
// temporarily_unavailable; Retry-After per RFC 9110 §10.2.3).
var errOverloaded = oauth.NewError(http.StatusServiceUnavailable, "temporarily_unavailable", "the server is overloaded; retry later")

// sourceFlow is the flow of a request that has proven nothing: its source
// address, an IPv6 address by its /64 (what one host is usually given). Behind a
// trusted proxy (Config.TrustedProxies) the source is the last address in
// X-Forwarded-For that is not itself a trusted proxy.
func (s *Server) sourceFlow(r *http.Request) string {
	return "addr:" + s.sourceAddr(r)
}

func (s *Server) sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if s.trusted(addr) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a malformed hop: the last trusted peer is the source
			}
			addr = hop.Unmap()
			if !s.trusted(addr) {
				break
			}
		}
	}
	if addr.Is6() {
		prefix, _ := addr.Prefix(64)
		return prefix.String()
	}
	return addr.String()
}

func (s *Server) trusted(addr netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
