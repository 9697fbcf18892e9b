package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

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
func configureFloor(addr string, answer serve.FloorAnswer) error {
	h := http.Header(answer.Header).Clone()
	for _, name := range []string{"Date", "Content-Length"} { // written per answer by net/http
		h.Del(name)
	}
	answer.Header = h
	data, err := json.Marshal(answer)
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
// requests[0] there, and returns that answer, requests at the floor's path and
// the beginning of the floor's answer (a load's ExpectBody).
func floorFor(addr string, requests []string) (answer serve.FloorAnswer, floor []string, expect string, err error) {
	status, header, body, err := realAnswer(addr, []byte(requests[0]))
	if err != nil {
		return answer, nil, "", err
	}
	answer = serve.FloorAnswer{Status: status, Header: header, Body: body}
	if err := configureFloor(addr, answer); err != nil {
		return answer, nil, "", err
	}
	expect = string(body)
	if len(expect) > 16 {
		expect = expect[:16]
	}
	return answer, atFloor(requests), expect, nil
}

// shapeLoads measures a row against its shape's floor at addr: the floor and
// then the row, each alone (profiled), and then both interleaved (loadJob.Floor),
// whose pair is the one the report's ratio is of. With work (the row's
// unavoidable work: a signature, two SHA-256), the row is then interleaved once
// more with the working floor, the floor doing that work in its own handler
// (serve.FloorWork): working; the floor is left configured without work. load
// runs requests expecting body; paired runs requests interleaved with floor.
func shapeLoads(name, addr string, requests []string, body string, work serve.FloorWork,
	load func(name string, requests []string, body string) (loadResult, error),
	paired func(name string, requests, floor []string, body, floorBody string, raw serve.FloorWork) (loadResult, error),
) (floorAlone, rowAlone, row loadResult, working *loadResult, err error) {
	answer, floor, floorBody, err := floorFor(addr, requests)
	if err != nil {
		return
	}
	if floorAlone, err = load("floor-"+name, floor, floorBody); err != nil {
		return
	}
	if rowAlone, err = load(name, requests, body); err != nil {
		return
	}
	if row, err = paired(name+"-interleaved", requests, floor, body, floorBody, work); err != nil || work.IsZero() {
		return
	}
	answer.Work = work
	if err = configureFloor(addr, answer); err != nil {
		return
	}
	defer func() {
		answer.Work = serve.FloorWork{}
		if plainErr := configureFloor(addr, answer); err == nil {
			err = plainErr
		}
	}()
	w, err := paired(name+"-working-interleaved", requests, floor, body, floorBody, serve.FloorWork{})
	return floorAlone, rowAlone, row, &w, err
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

// hashWork is introspection's unavoidable work: a SHA-256 of secret and one of key.
func hashWork(secret, key string) serve.FloorWork {
	return serve.FloorWork{Hash: []int{len(secret), len(key)}}
}
