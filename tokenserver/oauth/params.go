package oauth

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// ReadParams reads the parameters of a POST to the token, introspection or
// revocation endpoint within the size limit: the standard form encoding
// (RFC 6749 §3.2) or, for integrations written to the product's own documentation
// (as Auth0 accepts), a JSON object of string values. Either way a repeated
// parameter is invalid_request (RFC 6749 §3.2), except those listed as repeatable
// (RFC 8707's resource), and so is a JSON value that is not a string.
//
// A form's parameters are parsed into a map kept for reuse (formParams): the
// caller gives it back by release.Release once the request is answered, and
// nothing may hold the map after that (r.PostForm is not set to it).
func ReadParams(w http.ResponseWriter, r *http.Request, maxBodyBytes int64, repeatable ...string) (params url.Values, release Release, _ *Error) {
	contentType := r.Header.Get("Content-Type")
	switch {
	case FormContentType(contentType):
		// The body alone, without ParseForm's copy of it merged with the URL's
		// query into r.Form, which nothing here reads (make bench: ParseForm was
		// a third of introspection's own time).
		body, err := readBody(w, r, maxBodyBytes)
		if err != nil {
			return nil, Release{}, ErrInvalidRequest("the request body could not be read")
		}
		f, oerr := parseForm(body, repeatable)
		if oerr != nil {
			return nil, Release{}, oerr
		}
		return f.params, Release{f}, nil
	case jsonContentType(contentType):
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			return nil, Release{}, ErrInvalidRequest("the request body could not be read")
		}
		params, oerr := jsonParams(body, repeatable)
		return params, Release{}, oerr
	default:
		return nil, Release{}, ErrInvalidRequest("the request body must be application/x-www-form-urlencoded or application/json")
	}
}

// Release gives a form's parameters back for reuse (its zero value, of
// parameters not pooled, does nothing).
type Release struct{ f *formParams }

// Release empties the parameters and pools them; the map they were returned
// in is then another request's. Only the first call does: a map pooled twice
// would be handed to two requests at once.
func (r *Release) Release() {
	if f := r.f; f != nil {
		r.f = nil
		f.put()
	}
}

// addParam adds a parameter's value, refusing a second value of a parameter
// that is not repeatable.
func addParam(params url.Values, name, value string, repeatable []string) *Error {
	if values, seen := params[name]; seen {
		if !slices.Contains(repeatable, name) {
			return ErrInvalidRequest("parameter %s is repeated", name)
		}
		params[name] = append(values, value)
		return nil
	}
	params[name] = []string{value}
	return nil
}

// formParams is a form's parameters, in a map and with the first values of
// its parameters in one array, both reused from request to request (make bench:
// the map's first group and a slice per parameter were a tenth of
// introspection's allocations, and their share of the collector's work).
type formParams struct {
	params url.Values
	values [8]string
}

// keptParams is the most parameters a map returned to formParamsPool holds; a
// larger one (a body of many parameters, valid or not) is left to the collector.
const keptParams = 16

// maxFormParams is url.ParseQuery's most pieces between '&'s (net/url's
// defaultMaxParams): a body with more is refused, as it was.
const maxFormParams = 10_000

var formParamsPool = sync.Pool{New: func() any { return &formParams{params: make(url.Values, 8)} }}

// put empties f and pools it, unless it grew beyond keptParams.
func (f *formParams) put() {
	if len(f.params) > keptParams {
		return
	}
	clear(f.params)
	f.values = [len(f.values)]string{} // nothing of the body is kept alive by the pool
	formParamsPool.Put(f)
}

// parseForm parses a form body as url.ParseQuery does (the same separators,
// unescaping, limit and refusals; FuzzReadForm compares the endpoints' answers
// with url.ParseQuery's), into pooled parameters, and refuses a repeated
// parameter that is not repeatable. It stops at the first refusal, so where a
// body has two faults the error's description names the first.
func parseForm(body string, repeatable []string) (*formParams, *Error) {
	if strings.Count(body, "&") >= maxFormParams { // url.ParseQuery's limit
		return nil, ErrInvalidRequest("the request body could not be read")
	}
	f := formParamsPool.Get().(*formParams)
	used := 0
	for rest := body; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if strings.Contains(pair, ";") { // as url.ParseQuery: not a separator, an error
			f.put()
			return nil, ErrInvalidRequest("the request body could not be read")
		}
		if pair == "" {
			continue
		}
		name, value, _ := strings.Cut(pair, "=")
		name, err1 := url.QueryUnescape(name)
		value, err2 := url.QueryUnescape(value)
		if err1 != nil || err2 != nil {
			f.put()
			return nil, ErrInvalidRequest("the request body could not be read")
		}
		if _, seen := f.params[name]; !seen && used < len(f.values) {
			f.values[used] = value
			f.params[name] = f.values[used : used+1 : used+1] // a second value, where allowed, copies it out
			used++
			continue
		}
		if oerr := addParam(f.params, name, value, repeatable); oerr != nil {
			f.put()
			return nil, oerr
		}
	}
	return f, nil
}

// buffers hold request bodies being read and JSON answers being written.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// getBuffer is an empty buffer from the pool; putBuffer gives it back, unless a
// large body grew it (the pool keeps no more than 64 KiB per buffer).
func getBuffer() *bytes.Buffer {
	buf := buffers.Get().(*bytes.Buffer)
	buf.Reset()
	return buf
}

func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		buffers.Put(buf)
	}
}

// readBody reads r's body, at most maxBodyBytes of it, as a string.
func readBody(w http.ResponseWriter, r *http.Request, maxBodyBytes int64) (string, error) {
	buf := getBuffer()
	defer putBuffer(buf)
	// Bounded here whatever the length declared: net/http's server ends a body at
	// its Content-Length, but a request built otherwise (a test, a middleware that
	// swaps the body) need not.
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBodyBytes)); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// jsonParams reads a JSON object whose values are strings into parameters. A key
// given twice counts as repeated, exactly as in a form; a value of another type
// (number, array, object, null) is refused.
func jsonParams(body []byte, repeatable []string) (url.Values, *Error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, ErrInvalidRequest("the JSON body must be an object of string parameters")
	}
	params := url.Values{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, ErrInvalidRequest("the JSON body is malformed")
		}
		name := tok.(string) // object keys are always strings
		var value any
		if err := dec.Decode(&value); err != nil {
			return nil, ErrInvalidRequest("the JSON body is malformed")
		}
		str, ok := value.(string)
		if !ok {
			return nil, ErrInvalidRequest("parameter %s must be a string", name)
		}
		if oerr := addParam(params, name, str, repeatable); oerr != nil {
			return nil, oerr
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, ErrInvalidRequest("the JSON body is malformed")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, ErrInvalidRequest("the JSON body must hold one object")
	}
	return params, nil
}

// FormContentType reports whether a Content-Type is a form body. Media types compare
// case-insensitively, parameters (charset) aside (RFC 9110 §8.3.1); the exact
// spelling every client sends skips the parser, which allocates.
func FormContentType(contentType string) bool {
	const form = "application/x-www-form-urlencoded"
	if contentType == form {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == form
}

func jsonContentType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}
