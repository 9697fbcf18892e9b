package tokenserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/latchkey-dev/latchkey/internal/flowcontrol"
	"github.com/latchkey-dev/latchkey/tokenserver/leaks"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// CredentialRevocationPath is where anyone holding a credential revokes it
// (leaks.HandleRevoke); `kubectl latchkey report-leak` posts there.
const CredentialRevocationPath = "/credentials/revoke"

// Admission of the leak endpoints. Their callers prove nothing before the body
// is read (a scanner's signature covers the body), and a report may be 1 MiB:
// so the body is read in one of a few seats of the endpoint's own, by source
// address, with a deadline, and held there until answered. At most
// leakReadSeats bodies per endpoint are in memory at once, a slow upload holds a
// seat for leakReadTimeout at most, and self-revocations never take a scanner's
// seats.
const (
	leakReadSeats   = 8
	leakReadQueue   = 4
	leakReadWait    = 2 * time.Second
	leakReadTimeout = 5 * time.Second
)

// bodyHandler serves a request whose body has been read.
type bodyHandler func(w http.ResponseWriter, r *http.Request, body []byte)

// EnableLeakReports serves the secret-scanning and self-revocation endpoints
// (package leaks), recording reports with writer until ctx ends.
func (s *Server) EnableLeakReports(ctx context.Context, o leaks.Options, writer client.Client) error {
	l, err := leaks.New(leaks.Host{
		Index: s.index, Writer: writer, Clock: s.clock, Log: s.log.WithName("leaks"),
		Registry: s.registry, WithIO: s.withIO,
	}, o)
	if err != nil {
		return err
	}
	go l.Run(ctx)
	s.leakReports = l
	return nil
}

// leakEndpoint frames a leak endpoint: the source's anonymous budget, a read
// seat, the body (at most maxBytes, within leakReadTimeout), then a CPU seat.
func (s *Server) leakEndpoint(maxBytes int64, pick func(*leaks.Server) bodyHandler) http.HandlerFunc {
	reads := flowcontrol.New(flowcontrol.Config{
		Seats: leakReadSeats, QueueLength: leakReadQueue, MaxWaiting: 4 * leakReadSeats, MaxWait: leakReadWait,
	})
	return func(w http.ResponseWriter, r *http.Request) {
		if s.leakReports == nil {
			http.NotFound(w, r)
			return
		}
		if !s.anonymousBudgetLeft(w, r) {
			return
		}
		if r.ContentLength > maxBytes {
			oauth.WriteError(w, oauth.NewError(http.StatusRequestEntityTooLarge, "invalid_request", "the body is too large"))
			return
		}
		flow := s.sourceFlow(r)
		seat, err := reads.Acquire(r.Context(), flow)
		if err != nil {
			s.shed(w, r, err)
			return
		}
		defer seat.Done()
		if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(leakReadTimeout)); err != nil {
			s.log.Error(err, "cannot bound the time to read a leak report's body") // a writer without Unwrap: a bug
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			oauth.WriteError(w, oauth.NewError(http.StatusRequestEntityTooLarge, "invalid_request", "the body is too large"))
			return
		case err != nil:
			oauth.WriteError(w, oauth.ErrInvalidRequest("the body could not be read in time"))
			return
		}
		s.admitted(w, r, flow, func(w http.ResponseWriter, r *http.Request) { pick(s.leakReports)(w, r, body) })
	}
}
