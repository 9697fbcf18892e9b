package serve

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// FloorPath is where a server started with Config.Floor answers as a no-op.
//
// The floor is what `make bench` measures each request shape against: the
// cheapest answer this very server (its listener, its connection handling, its
// draining wrapper) can give to a request of that shape. A request to
// FloorPath+"answer" has its body read and, when it is a form, parsed, and gets
// the status, headers and body last given to FloorPath+"configure" (a JSON
// FloorAnswer), and nothing else happens: no authentication, no lookup, no
// metrics. The benchmark configures it with a real answer of the endpoint it
// measures and sends the same requests to it, path aside.
//
// It is off unless a process is started with --benchmark-floor, and nothing in
// the chart or config/ turns it on: an anonymous caller could set its answer,
// and make every answer generate a key or sign (FloorWork).
const FloorPath = "/debug/floor/"

// FloorAnswer is the answer the floor gives until configured again.
type FloorAnswer struct {
	Status int                 `json:"status"`
	Header map[string][]string `json:"header"`
	Body   []byte              `json:"body"`
	// Work, when set, is done before each answer: the floor then stands for the
	// endpoint's request shape together with its unavoidable work.
	Work FloorWork `json:"work,omitzero"`
}

// FloorWork is an endpoint's unavoidable work, done raw: the signature of a token
// endpoint, the SHA-256 of an introspection's client secret and key. make bench
// measures it twice with this one definition: alone in a loop (the raw
// reference, which the targets combine with the floor as
// 1/(1/floor + 1/raw)), and inside the floor's handler (the working floor), where
// it also pays what a slower answer costs the rest of the request.
type FloorWork struct {
	// Sign is a signing algorithm (signingkeys: RS256, ES256, EdDSA), or "" for none:
	// a signature of SignBytes bytes with a key of that algorithm, as a token's.
	Sign      string `json:"sign,omitempty"`
	SignBytes int    `json:"signBytes,omitempty"`
	// Hash is the sizes of inputs each hashed once with SHA-256.
	Hash []int `json:"hash,omitempty"`
}

// IsZero reports whether there is no work.
func (fw FloorWork) IsZero() bool { return fw.Sign == "" && len(fw.Hash) == 0 }

// Prepare makes the work's key and inputs once and returns what does the work.
func (fw FloorWork) Prepare() (func() error, error) {
	if fw.SignBytes < 0 || fw.SignBytes > maxFloorBytes || len(fw.Hash) > 16 {
		return nil, fmt.Errorf("floor work out of bounds")
	}
	var inputs [][]byte
	for _, n := range fw.Hash {
		if n < 0 || n > maxFloorBytes {
			return nil, fmt.Errorf("floor work out of bounds")
		}
		inputs = append(inputs, bytes.Repeat([]byte{'k'}, n))
	}
	var signer crypto.Signer
	var message []byte
	if fw.Sign != "" {
		now := time.Now()
		key, err := signingkeys.Generate(fw.Sign, rand.Reader, now, now, now.Add(time.Hour))
		if err != nil {
			return nil, err
		}
		var ok bool
		if signer, ok = key.Private.Key.(crypto.Signer); !ok {
			return nil, fmt.Errorf("%s key is not a crypto.Signer", fw.Sign)
		}
		message = bytes.Repeat([]byte{'e'}, fw.SignBytes)
	}
	eddsa := fw.Sign == signingkeys.EdDSA
	var sink byte
	return func() error {
		for _, in := range inputs {
			sum := sha256.Sum256(in)
			sink ^= sum[0]
		}
		switch {
		case signer == nil:
			return nil
		case eddsa: // Ed25519 signs the message itself
			_, err := signer.Sign(rand.Reader, message, crypto.Hash(0))
			return err
		default:
			digest := sha256.Sum256(message)
			_, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
			return err
		}
	}, nil
}

// workingAnswer is a configured answer with its work prepared.
type workingAnswer struct {
	FloorAnswer
	work func() error // nil: none
}

// maxFloorBytes bounds a configured answer and a body the floor reads.
const maxFloorBytes = 1 << 20

// withFloor routes FloorPath to a floor and everything else to next.
func withFloor(next http.Handler) http.Handler {
	var answer atomic.Pointer[workingAnswer]
	answer.Store(&workingAnswer{FloorAnswer: FloorAnswer{Status: http.StatusOK}})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, FloorPath) {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxFloorBytes))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case FloorPath + "configure":
			var a FloorAnswer
			if err := json.Unmarshal(body, &a); err != nil || a.Status < 100 || a.Status > 599 {
				http.Error(w, "a FloorAnswer as JSON, with a status", http.StatusBadRequest)
				return
			}
			configured := &workingAnswer{FloorAnswer: a}
			if !a.Work.IsZero() {
				if configured.work, err = a.Work.Prepare(); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
			}
			answer.Store(configured)
			w.WriteHeader(http.StatusNoContent)
		case FloorPath + "answer":
			if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
				if _, err := url.ParseQuery(string(body)); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
			}
			a := answer.Load()
			if a.work != nil {
				if err := a.work(); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			h := w.Header()
			for name, values := range a.Header {
				h[name] = values
			}
			w.WriteHeader(a.Status)
			_, _ = w.Write(a.Body)
		default:
			http.NotFound(w, r)
		}
	})
}
