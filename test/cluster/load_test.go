//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"
)

// chartImage is the image the chart runs with default values: its repository and
// its appVersion.
func chartImage() string {
	raw, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	Expect(err).NotTo(HaveOccurred())
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	Expect(yaml.Unmarshal(raw, &chart)).To(Succeed())
	raw, err = os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	Expect(err).NotTo(HaveOccurred())
	var values struct {
		Image struct {
			Repository string `json:"repository"`
		} `json:"image"`
	}
	Expect(yaml.Unmarshal(raw, &values)).To(Succeed())
	return values.Image.Repository + ":" + chart.AppVersion
}

// imageRef is the tag the image tarball carries.
func imageRef() string {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(imageTar) })
	Expect(err).NotTo(HaveOccurred())
	Expect(m).To(HaveLen(1))
	Expect(m[0].RepoTags).To(HaveLen(1))
	return m[0].RepoTags[0]
}

// load sends token requests and authorizer checks through the Services, each
// worker at a steady pace, and counts every answer. A 503 with Retry-After (the
// token server's documented overload answer) is retried once after the delay it
// names, as the README tells clients to; any other failure is counted and kept.
type load struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	ok       atomic.Int64
	retried  atomic.Int64
	mu       sync.Mutex
	failures []string
}

// loadTarget is one kind of request the load sends.
type loadTarget struct {
	name string
	do   func(ctx context.Context) (*http.Response, error)
	want int
}

func startLoad(workersPerTarget int, every time.Duration, targets ...loadTarget) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for _, t := range targets {
		for range workersPerTarget {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer GinkgoRecover()
				tick := time.NewTicker(every)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					l.once(ctx, t)
				}
			}()
		}
	}
	return l
}

func (l *load) once(ctx context.Context, t loadTarget) {
	for attempt := 0; ; attempt++ {
		resp, err := t.do(ctx)
		if ctx.Err() != nil {
			return // stopped while in flight: not an answer
		}
		if err != nil {
			l.fail(fmt.Sprintf("%s: %v", t.name, err))
			return
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == t.want {
			l.ok.Add(1)
			return
		}
		if resp.StatusCode == http.StatusServiceUnavailable && attempt == 0 {
			if after, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
				l.retried.Add(1)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Duration(after) * time.Second):
				}
				continue
			}
		}
		l.fail(fmt.Sprintf("%s: %d %s", t.name, resp.StatusCode, strings.TrimSpace(string(body))))
		return
	}
}

func (l *load) fail(what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+what)
}

// stop ends the load and reports what it saw.
func (l *load) stop(what string) (ok int64, failures []string) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	AddReportEntry(what, fmt.Sprintf("%d answered, %d retried after a 503, %d failed", l.ok.Load(), l.retried.Load(), len(l.failures)))
	By(fmt.Sprintf("%s: %d answered, %d retried after a 503, %d failed", what, l.ok.Load(), l.retried.Load(), len(l.failures)))
	return l.ok.Load(), l.failures
}

// tokenTarget requests client_credentials tokens at the token server's Service
// with client hc.
func tokenTarget(hc *http.Client, tokenURL string, c oauthClient) loadTarget {
	return loadTarget{name: "token", want: http.StatusOK, do: func(ctx context.Context) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader("grant_type=client_credentials"))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
		return hc.Do(req)
	}}
}

// authzTarget asks the authorizer's forward-auth endpoint about a GET of the leads
// API with an API key, as Caddy or Traefik do, over keep-alive connections (a GET
// is idempotent: an HTTP client sends it again on a new connection when the server
// closed the idle one it tried, RFC 9110 §9.2.2).
func authzTarget(authzURL, apiKey string) loadTarget {
	return loadTarget{name: "authz", want: http.StatusOK, do: func(ctx context.Context) (*http.Response, error) {
		req, err := forwardAuthRequest(ctx, authzURL, apiKey)
		if err != nil {
			return nil, err
		}
		return httpc.Do(req)
	}}
}

func forwardAuthRequest(ctx context.Context, authzURL, credential string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authzURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Forwarded-Method", http.MethodGet)
	req.Header.Set("X-Forwarded-Uri", "/v1/leads")
	req.Header.Set("X-Forwarded-Host", "api.example.com")
	req.Header.Set("Authorization", "Bearer "+credential)
	return req, nil
}
