package oauth

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sync"
)

// ReadParams reads the parameters of a POST to the token, introspection or
// revocation endpoint within the size limit: the standard form encoding
// (RFC 6749 §3.2) or, for integrations written to the product's own documentation
// (as Auth0 accepts), a JSON object of string values. Either way a repeated
// parameter is invalid_request (RFC 6749 §3.2), except those listed as repeatable
// (RFC 8707's resource), and so is a JSON value that is not a string.
func ReadParams(w http.ResponseWriter, r *http.Request, maxBodyBytes int64, repeatable ...string) (url.Values, *Error) {
	contentType := r.Header.Get("Content-Type")
	var params url.Values
	switch {
	case FormContentType(contentType):
		// The body alone, as r.PostForm would hold it, without ParseForm's copy
		// of it merged with the URL's query into r.Form, which nothing here reads
		// (make bench: ParseForm was a third of introspection's own time).
		body, err := readBody(w, r, maxBodyBytes)
		if err != nil {
			return nil, ErrInvalidRequest("the request body could not be read")
		}
		if params, err = url.ParseQuery(body); err != nil {
			return nil, ErrInvalidRequest("the request body could not be read")
		}
		r.PostForm = params
	case jsonContentType(contentType):
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			return nil, ErrInvalidRequest("the request body could not be read")
		}
		var oerr *Error
		if params, oerr = jsonParams(body); oerr != nil {
			return nil, oerr
		}
	default:
		return nil, ErrInvalidRequest("the request body must be application/x-www-form-urlencoded or application/json")
	}
	for name, values := range params {
		if len(values) > 1 && !slices.Contains(repeatable, name) {
			return nil, ErrInvalidRequest("parameter %s is repeated", name)
		}
	}
	return params, nil
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
func jsonParams(body []byte) (url.Values, *Error) {
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
		params.Add(name, str)
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
