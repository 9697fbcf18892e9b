package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// Where the token server's cold start goes at the largest key count: one more
// start (not among the timed ones) with --startup-cpu-profile, summarised by
// `go tool pprof` (top entries by cumulative and by own time, and how much of the
// start the process spent on a CPU at all); and a plain LIST of the same APIKeys
// with the token server's identity (resourceVersion=0: from the API server's watch
// cache), made by a child pinned to the server core (GOMAXPROCS=1), split into the
// API server's time to the first byte, the transfer, and the decoding with the
// standard codec into typed APIKeys. A token server that decodes as the bytes
// arrive overlaps the last two: the split says what each costs, not how they add up.

// coldStartProfile is that extra start and the list split.
type coldStartProfile struct {
	keys    int
	ready   time.Duration // the profiled start, process start to ready
	missing string        // why there is no profile ("" when there is)
	summary string        // the profile's duration and total samples (time on a CPU)
	cum     string        // `go tool pprof -top -cum`: the top entries
	flat    string        // `go tool pprof -top`: the top entries
	list    listResult
	listErr string
}

// listJob is the LIST the `bench list` child makes.
type listJob struct {
	Kubeconfig string
	Path       string
}

type listResult struct {
	// Gzipped, as the token server lists (a Kubernetes client's default,
	// --kube-api-compression): request to first byte, first to last byte, and
	// inflating the body; medians of listRounds. WireBytes crossed the wire;
	// Bytes is the JSON inflated.
	FirstByte, Transfer, Inflate time.Duration
	WireBytes, Bytes             int64
	// Decoding the JSON into typed APIKeys, once.
	Decode time.Duration
	Items  int
	// The same LIST uncompressed (the token server's with
	// --kube-api-compression=false), alternated with the gzipped one: request to
	// first byte and first to last byte; medians of listRounds.
	PlainFirstByte, PlainTransfer time.Duration
}

// listRounds is how many times the list child lists each way, plain and gzipped
// in turn: one way and then the other would measure this machine's drift.
const listRounds = 3

// profiledColdStart starts the token server once more with a startup CPU profile
// and measures the list split.
func (b *bench) profiledColdStart(ctx context.Context, keys int) error {
	prof := &coldStartProfile{keys: keys}
	b.report.coldStartProfile = prof
	var list listResult
	err := runChild(ctx, "list", b.s.serverCPU, listJob{
		Kubeconfig: filepath.Join(b.c.dir, "latchkey-tokenserver.kubeconfig"),
		Path:       "/apis/" + latchkeyv1.GroupVersion.String() + "/apikeys?resourceVersion=0",
	}, &list)
	if err != nil {
		prof.listErr = err.Error()
	}
	prof.list = list
	logf("  LIST of %d APIKeys (%.1f MiB, gzipped %.1f MiB): first byte %s, transfer %s, inflate %s, decode %s; uncompressed: first byte %s, transfer %s",
		list.Items, float64(list.Bytes)/(1<<20), float64(list.WireBytes)/(1<<20), list.FirstByte.Round(time.Millisecond), list.Transfer.Round(time.Millisecond),
		list.Inflate.Round(time.Millisecond), list.Decode.Round(time.Millisecond), list.PlainFirstByte.Round(time.Millisecond), list.PlainTransfer.Round(time.Millisecond))

	if !hasFlag("tokenserver", "startup-cpu-profile") {
		prof.missing = "this build's token server has no --startup-cpu-profile"
		logf("  no startup profile: %s", prof.missing)
		return nil
	}
	file := filepath.Join(b.c.dir, fmt.Sprintf("tokenserver-startup-%d.pprof", keys))
	b.server.stop()
	b.server = nil
	p, ready, err := b.c.tokenServer(ctx, "RS256", b.s.serverCPU, "", "", "--startup-cpu-profile="+file)
	if err != nil {
		return err
	}
	b.server, b.alg, prof.ready = p, "RS256", ready
	if err := waitWritten(ctx, file, 30*time.Second); err != nil {
		prof.missing = err.Error()
		return nil
	}
	if b.s.profileDir != "" {
		if data, err := os.ReadFile(file); err == nil {
			_ = os.WriteFile(filepath.Join(b.s.profileDir, filepath.Base(file)), data, 0o644)
		}
	}
	for _, view := range []struct {
		out  *string
		args []string
	}{{&prof.cum, []string{"-top", "-cum"}}, {&prof.flat, []string{"-top"}}} {
		args := append([]string{"tool", "pprof", "-nodecount=10"}, view.args...)
		out, err := exec.CommandContext(ctx, "go", append(args, repoPath("bin", "latchkey"), file)...).CombinedOutput()
		if err != nil {
			prof.missing = fmt.Sprintf("go tool pprof: %v: %s", err, out)
			return nil
		}
		prof.summary, *view.out = pprofTop(string(out))
	}
	logf("  profiled start ready after %s; %s; by cumulative time:\n%s", ready.Round(time.Millisecond), prof.summary, prof.cum)
	return nil
}

// pprofTop splits `go tool pprof -top` output into its summary line (Duration,
// Total samples) and the table, without the file, build and time lines.
func pprofTop(out string) (summary, table string) {
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.HasPrefix(line, "Duration:"):
			summary = line
		case strings.HasPrefix(line, "File:"), strings.HasPrefix(line, "Build ID:"), strings.HasPrefix(line, "Type:"), strings.HasPrefix(line, "Time:"):
		default:
			rows = append(rows, collapseTypeArgs(line))
		}
	}
	return summary, strings.Join(rows, "\n")
}

// collapseTypeArgs shortens a generic function's type arguments to "[…]": pprof
// prints them in full (go.shape.struct { … } with every field and tag).
func collapseTypeArgs(line string) string {
	var b strings.Builder
	depth := 0
	for _, r := range line {
		switch {
		case r == '[':
			if depth == 0 {
				b.WriteString("[…]")
			}
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// waitWritten waits until file is non-empty and its size has stopped changing:
// the token server writes it when its caches have synced, about when it turns ready.
func waitWritten(ctx context.Context, file string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := int64(-1)
	for {
		if st, err := os.Stat(file); err == nil && st.Size() > 0 {
			if st.Size() == last {
				return nil
			}
			last = st.Size()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no complete startup profile in %s after %s", file, timeout)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// runList is `bench list`: the LIST of job.Path with job.Kubeconfig's identity,
// gzipped (as the token server lists) and uncompressed in turn listRounds times,
// each read whole; the JSON then decoded as the token server's client decodes.
func runList(job listJob) (listResult, error) {
	var res listResult
	cfg, err := clientcmd.BuildConfigFromFlags("", job.Kubeconfig)
	if err != nil {
		return res, err
	}
	// gzip is asked for explicitly (get), as a client's transport asks for it
	// by default, so that the transport hands the body over as it came.
	cfg.DisableCompression = true
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return res, err
	}
	get := func(gzipped bool) (firstByte, transfer time.Duration, body []byte, err error) {
		req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+job.Path, nil)
		if err != nil {
			return 0, 0, nil, err
		}
		req.Header.Set("Accept", "application/json")
		if gzipped {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		var first time.Time
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotFirstResponseByte: func() { first = time.Now() },
		}))
		sent := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, 0, nil, err
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, resp.Body); err != nil {
			return 0, 0, nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, 0, nil, fmt.Errorf("GET %s: %s", job.Path, resp.Status)
		}
		if gzipped != (resp.Header.Get("Content-Encoding") == "gzip") {
			return 0, 0, nil, fmt.Errorf("GET %s (gzip asked: %t): Content-Encoding %q", job.Path, gzipped, resp.Header.Get("Content-Encoding"))
		}
		return first.Sub(sent), time.Since(first), buf.Bytes(), nil
	}
	inflate := func(zipped []byte, into io.Writer) error {
		zr, err := gzip.NewReader(bytes.NewReader(zipped))
		if err != nil {
			return err
		}
		_, err = io.Copy(into, zr)
		return err
	}
	var gzipped [3][]time.Duration // first byte, transfer, inflate
	var plain [2][]time.Duration   // first byte, transfer
	var zipped []byte
	for range listRounds {
		first, transfer, body, err := get(true)
		if err != nil {
			return res, err
		}
		begin := time.Now()
		if err := inflate(body, io.Discard); err != nil {
			return res, err
		}
		gzipped[0], gzipped[1], gzipped[2], zipped = append(gzipped[0], first), append(gzipped[1], transfer), append(gzipped[2], time.Since(begin)), body
		if first, transfer, _, err = get(false); err != nil {
			return res, err
		}
		plain[0], plain[1] = append(plain[0], first), append(plain[1], transfer)
	}
	var body bytes.Buffer // the JSON, to decode
	if err := inflate(zipped, &body); err != nil {
		return res, err
	}
	res.FirstByte, res.Transfer, res.Inflate = pct(gzipped[0], 0.5), pct(gzipped[1], 0.5), pct(gzipped[2], 0.5)
	res.WireBytes, res.Bytes = int64(len(zipped)), int64(body.Len())
	res.PlainFirstByte, res.PlainTransfer = pct(plain[0], 0.5), pct(plain[1], 0.5)

	scheme := runtime.NewScheme()
	if err := latchkeyv1.AddToScheme(scheme); err != nil {
		return res, err
	}
	decoder := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	begin := time.Now()
	obj, _, err := decoder.Decode(body.Bytes(), nil, &latchkeyv1.APIKeyList{})
	if err != nil {
		return res, err
	}
	res.Decode = time.Since(begin)
	if list, ok := obj.(*latchkeyv1.APIKeyList); ok {
		res.Items = len(list.Items)
	}
	return res, nil
}
