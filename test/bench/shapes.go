package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/latchkey-dev/latchkey/internal/serve"
)

// The floor of each request shape (issue 25): GET /healthz is the floor of a
// bodiless GET, not of a POST that carries a form and answers JSON, nor of a
// forward-auth request with its headers. The token server and the authorizer,
// started with --benchmark-floor, answer under serve.FloorPath as a no-op: the
// same listener and connection handling, the body read and the form parsed,
// then the answer configured just before, which is a real answer of the
// endpoint measured. The floor load sends the endpoint's own requests, path
// aside. A row's share of the floor then charges the endpoint only with what it
// does besides being an HTTP endpoint of that shape.

// configureFloor sets the floor's answer on the server at addr.
func configureFloor(addr string, status int, header http.Header, body []byte) error {
	h := header.Clone()
	for _, name := range []string{"Date", "Content-Length"} { // written per answer by net/http
		h.Del(name)
	}
	data, err := json.Marshal(serve.FloorAnswer{Status: status, Header: h, Body: body})
	if err != nil {
		return err
	}
	resp, err := http.Post("http://"+addr+serve.FloorPath+"configure", "application/json", bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("configuring the floor at %s: %d %s (is the server started with --benchmark-floor?)", addr, resp.StatusCode, msg)
	}
	return nil
}

// atFloor is each raw request with its path replaced by the floor's.
func atFloor(requests []string) []string {
	out := make([]string, len(requests))
	for i, r := range requests {
		method, rest, _ := strings.Cut(r, " ")
		_, rest, _ = strings.Cut(rest, " ")
		out[i] = method + " " + serve.FloorPath + "answer " + rest
	}
	return out
}

// floorFor configures the floor of the server at addr with the answer to
// requests[0] there, and returns requests at the floor's path and the
// beginning of the floor's answer (a load's ExpectBody).
func floorFor(addr string, requests []string) (floor []string, expect string, err error) {
	status, header, body, err := realAnswer(addr, []byte(requests[0]))
	if err != nil {
		return nil, "", err
	}
	if err := configureFloor(addr, status, header, body); err != nil {
		return nil, "", err
	}
	expect = string(body)
	if len(expect) > 16 {
		expect = expect[:16]
	}
	return atFloor(requests), expect, nil
}

// shapeLoads measures a row against its shape's floor at addr: the floor and
// then the row, each alone (profiled), and then both interleaved (loadJob.Floor),
// whose pair is the one the report's ratio is of. load runs requests expecting
// body; paired runs requests interleaved with floor.
func shapeLoads(name, addr string, requests []string, body string,
	load func(name string, requests []string, body string) (loadResult, error),
	paired func(name string, requests, floor []string, body, floorBody string) (loadResult, error),
) (floorAlone, rowAlone, row loadResult, err error) {
	floor, floorBody, err := floorFor(addr, requests)
	if err != nil {
		return
	}
	if floorAlone, err = load("floor-"+name, floor, floorBody); err != nil {
		return
	}
	if rowAlone, err = load(name, requests, body); err != nil {
		return
	}
	row, err = paired(name+"-interleaved", requests, floor, body, floorBody)
	return
}

// rawRequests is requests as a load job carries them.
func rawRequests(requests []string) [][]byte {
	raw := make([][]byte, len(requests))
	for i, r := range requests {
		raw[i] = []byte(r)
	}
	return raw
}

// realAnswer sends one raw request to addr and returns its answer, for configureFloor.
func realAnswer(addr string, raw []byte) (int, http.Header, []byte, error) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return 0, nil, nil, err
	}
	req.RequestURI, req.URL.Scheme, req.URL.Host = "", "http", addr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

// combined is the rate of doing two things one after the other on one core, each
// at its own rate: 1 / (1/a + 1/b).
func combined(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return 1 / (1/a + 1/b)
}

// hashJob is introspection's unavoidable work beyond the floor, raw: one SHA-256
// of the resource server's client secret and one of the API key, one goroutine.
type hashJob struct {
	Secret, Key string
	Duration    time.Duration
}

type hashResult struct {
	Pairs int
	Rate  float64 // pairs of hashes per second
}

func runHash(job hashJob) (hashResult, error) {
	var res hashResult
	var sink byte
	secret, key := []byte(job.Secret), []byte(job.Key)
	start := time.Now()
	for time.Since(start) < job.Duration {
		for range 100 {
			a, b := sha256.Sum256(secret), sha256.Sum256(key)
			sink ^= a[0] ^ b[0]
		}
		res.Pairs += 100
	}
	res.Rate = float64(res.Pairs) / time.Since(start).Seconds()
	_ = sink
	return res, nil
}
