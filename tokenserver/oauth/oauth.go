// Package oauth is the OAuth 2.0 vocabulary the token server's endpoints share:
// RFC 6749 error responses and how they are written, the token response, the
// interface of a grant type's handler (one per grant, as Ory fosite's), reading a
// request's parameters, and scope lists. It holds no state and does no I/O
// besides writing a response.
package oauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/jsonappend"
)

// Error is an RFC 6749 §5.2 error response.
type Error struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// NewError is an error response with an HTTP status.
func NewError(status int, code, description string) *Error {
	return &Error{Status: status, Code: code, Description: description}
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// ErrInvalidRequest is a 400 invalid_request.
func ErrInvalidRequest(format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, args...))
}

// ErrInvalidClient is the same for an unknown id, a wrong secret, and a revoked,
// expired or not-yet-issued client, so that none can be told from another.
var ErrInvalidClient = NewError(http.StatusUnauthorized, "invalid_client", "client authentication failed")

// ErrSigning is the answer when no signing key signs now.
var ErrSigning = NewError(http.StatusServiceUnavailable, "temporarily_unavailable", "no signing key is available")

// WriteError writes an RFC 6749 error. 401s carry a WWW-Authenticate challenge.
func WriteError(w http.ResponseWriter, e *Error) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="latchkey", charset="UTF-8"`)
	}
	WriteJSON(w, e.Status, e)
}

// WriteJSON writes a JSON response that no cache may keep.
func WriteJSON(w http.ResponseWriter, status int, body any) {
	if a, ok := body.(JSONAppender); ok {
		WriteAppended(w, status, a)
		return
	}
	buf := getBuffer()
	defer putBuffer(buf)
	_ = json.NewEncoder(buf).Encode(body)
	writeJSONBytes(w, status, buf.Bytes())
}

// WriteAppended is WriteJSON for a fixed shape. Generic, so that a caller's
// answer is not copied to the heap to become an interface (make bench: the
// introspection answer's copy was its largest allocation but one).
func WriteAppended[T JSONAppender](w http.ResponseWriter, status int, body T) {
	buf := getBuffer()
	defer putBuffer(buf)
	buf.Write(append(body.AppendJSON(buf.AvailableBuffer()), '\n')) // as Encode ends with a newline
	writeJSONBytes(w, status, buf.Bytes())
}

func writeJSONBytes(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	// Shared, never modified values: one allocation less per header and answer.
	h["Content-Type"], h["Cache-Control"], h["Pragma"] = jsonType, noStore, noCache
	if len(body) > chunkingSize {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	} // else net/http writes it, without the two allocations, as the answer fits its buffer
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// chunkingSize is the size of net/http's response buffer (bufferBeforeChunkingSize):
// a handler that writes no more and returns gets a Content-Length from it.
const chunkingSize = 2048

// The header values every JSON answer carries; net/http copies them when it
// writes the header (Header.Clone) and never appends to them (cap = len).
var (
	jsonType = []string{"application/json"}[:1:1]
	noStore  = []string{"no-store"}[:1:1]
	noCache  = []string{"no-cache"}[:1:1]
)

// JSONAppender is a fixed shape written without reflection (package jsonappend).
type JSONAppender interface{ AppendJSON([]byte) []byte }

// AppendJSON appends r as encoding/json marshals it (the tests compare).
func (r TokenResponse) AppendJSON(b []byte) []byte {
	o := jsonappend.Open(b)
	o.String("access_token", r.AccessToken, false)
	o.String("token_type", r.TokenType, false)
	o.Int("expires_in", r.ExpiresIn, false)
	o.String("scope", r.Scope, true)
	o.String("refresh_token", r.RefreshToken, true)
	return o.Close()
}

// TokenResponse is RFC 6749 §5.1.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// Grant serves one grant_type at the token endpoint (as Ory fosite's handlers
// do): the endpoint reads the parameters and authenticates the client once, and
// each grant decides the rest.
type Grant interface {
	// Allowed reports whether client may use the grant (unauthorized_client if not).
	Allowed(client *index.Client) bool
	// PublicClients says whether a public client (no secret) may use the grant.
	PublicClients() bool
	// DoesIO says whether Issue reads or writes the API server or calls the
	// upstream provider: its request then carries the caller's admission (withIO).
	DoesIO() bool
	// Issue answers the request.
	Issue(r *http.Request, client *index.Client, params url.Values) (TokenResponse, *Error)
}

// Via says who a token is for when a third-party app acts in a workspace: the
// user who authorized it (RFC 9068: sub), the workspace, the grant and the
// refresh-token family the token belongs to, and the grant's version at issue.
type Via struct {
	Subject, Workspace, GrantUID, Family, GrantVersion string
}
