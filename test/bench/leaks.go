package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// Leaked keys (issue 23): how many reported tokens the token server checks per
// second on its core, against the same work done raw on that core, and the time
// from a report (POST /credentials/revoke with the key alone) to the first
// refusal at introspection.

// leakBatch is the tokens of one request of the throughput load: as many as the
// endpoint takes.
const leakBatch = 1000

type leakRun struct {
	// tokens: the load of POST /credentials/revoke with leakBatch well-formed
	// keys that are not live (each checked: checksum, hash, index lookup).
	tokens loadResult
	raw    checkResult
	// latencies from sending the report, and from its 204, to the first refusal.
	fromSend, fromAnswer []time.Duration
}

// checkJob is the raw reference: decode Body as the endpoint does, and check
// each token's checksum and hash, on one core, for Duration.
type checkJob struct {
	Body     []byte
	Duration time.Duration
}

type checkResult struct {
	Tokens int
	Rate   float64 // tokens per second
}

func runCheck(job checkJob) (checkResult, error) {
	var res checkResult
	var sink byte
	start := time.Now()
	for time.Since(start) < job.Duration {
		var req struct {
			Credentials []string `json:"credentials"`
		}
		if err := json.Unmarshal(job.Body, &req); err != nil {
			return res, err
		}
		for _, t := range req.Credentials {
			if _, err := credential.ParseAPIKey(t); err == nil {
				sum := sha256.Sum256([]byte(t))
				sink ^= sum[0]
			}
		}
		res.Tokens += len(req.Credentials)
	}
	res.Rate = float64(res.Tokens) / time.Since(start).Seconds()
	_ = sink
	return res, nil
}

// leakBody is a revocation request of n made-up, well-formed keys.
func leakBody(n int) ([]byte, error) {
	keys := make([]string, n)
	for i := range keys {
		k, err := credential.NewAPIKey(rand.Reader, "lk", "live")
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	return json.Marshal(map[string][]string{"credentials": keys})
}

// leaks measures both. The throughput load runs on a token server without the
// per-source budget of anonymous requests (the load comes from one address);
// the running one is restarted as it was afterwards.
func (b *bench) leaks(ctx context.Context) error {
	if err := b.confine(b.s.loadCPU, "19"); err != nil {
		return err
	}
	body, err := leakBody(leakBatch)
	if err != nil {
		return err
	}
	var run leakRun
	if err := runChild(ctx, "check", b.s.serverCPU, checkJob{Body: body, Duration: b.s.duration}, &run.raw); err != nil {
		return err
	}
	logf("  raw check of %d-token reports on core %s: %.0f tokens/s", leakBatch, b.s.serverCPU, run.raw.Rate)
	alg := b.alg
	b.server.stop()
	pprofAddr := ""
	if b.s.profileDir != "" {
		pprofAddr = b.pprofAddr
	}
	if b.server, _, err = b.c.tokenServer(ctx, alg, b.s.serverCPU, pprofAddr, "", "--anonymous-requests-per-source=-1"); err != nil {
		return err
	}
	req := b.jsonRequest("/credentials/revoke", body)
	if run.tokens, err = b.load(ctx, "leak-report", []string{req}, http.StatusNoContent, ""); err != nil {
		return err
	}
	logf("  POST /credentials/revoke: %.0f tokens/s", run.tokens.Rate*leakBatch)
	if _, err := b.restartTokenServer(ctx, alg); err != nil {
		return err
	}

	// The API server carries the report's record: normal priority.
	if err := b.confine(b.s.loadCPU, "0"); err != nil {
		return err
	}
	rs := b.clients[0]
	first := 2*b.s.revocations + b.s.introspected + b.s.lastUsedKeys // keys no other step uses
	for i := first; i < first+b.s.revocations; i++ {
		key, err := b.c.secretData(ctx, keyName(i)+"-apikey", latchkeyv1.APIKeySecretKey)
		if err != nil {
			return err
		}
		report, err := json.Marshal(map[string][]string{"credentials": {key}})
		if err != nil {
			return err
		}
		poll := b.request(http.MethodPost, "/oauth2/introspect", url.Values{"token": {key}}.Encode(), basicAuth(rs))
		fromSend, fromAnswer, err := b.reportAndPoll(poll, b.jsonRequest("/credentials/revoke", report))
		if err != nil {
			return fmt.Errorf("reporting %s: %w", keyName(i), err)
		}
		run.fromSend, run.fromAnswer = append(run.fromSend, fromSend), append(run.fromAnswer, fromAnswer)
	}
	logf("  report → first refusal at introspection: p50 %s p99 %s (from the 204: p99 %s)",
		pct(run.fromSend, 0.5), pct(run.fromSend, 0.99), pct(run.fromAnswer, 0.99))
	b.report.leaks = &run
	return nil
}

// jsonRequest renders a raw POST of a JSON body to the token server.
func (b *bench) jsonRequest(path string, body []byte) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		path, b.c.tokenAddr, len(body), body)
}

// reportAndPoll introspects in a loop on one connection, sends report on another,
// and returns the time from sending it, and from its 204, to the first inactive
// answer.
func (b *bench) reportAndPoll(poll, report string) (time.Duration, time.Duration, error) {
	inactive := func(status int, body []byte) bool {
		return status == http.StatusOK && strings.Contains(string(body), `"active":false`)
	}
	return pollUntilRefused(b.c.tokenAddr, poll, inactive, func() (time.Time, time.Time, error) {
		reporter, err := net.Dial("tcp", b.c.tokenAddr)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		defer reporter.Close()
		sent := time.Now()
		if _, err := reporter.Write([]byte(report)); err != nil {
			return sent, sent, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(reporter), nil)
		if err != nil {
			return sent, sent, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return sent, sent, fmt.Errorf("the report was answered %s", resp.Status)
		}
		return sent, time.Now(), nil
	})
}
