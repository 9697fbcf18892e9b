// Command flooder sends one kind of request to a token server as fast as it can,
// over many keep-alive connections from one source address, until it is
// stopped: the hostile callers of the chaos suite's flood specs. It runs as its
// own process so that its goroutines do not share a scheduler with the
// measurements of the suite. On SIGTERM it prints how many answers it got, by
// status code, as JSON.
//
// Usage: flooder -url http://127.0.0.1:8080 -source 127.0.0.2 -connections 1000 -kind token|revoke|refresh
package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	base := flag.String("url", "", "the token server")
	source := flag.String("source", "127.0.0.1", "the local address to send from")
	connections := flag.Int("connections", 100, "keep-alive connections, one request at a time on each")
	kind := flag.String("kind", "token", "token: client_credentials with -client-id and -client-secret; revoke, refresh: made-up refresh tokens for -workspace as the public client -client-id")
	clientID := flag.String("client-id", "", "")
	clientSecret := flag.String("client-secret", "", "")
	workspace := flag.String("workspace", "", "")
	flag.Parse()

	var codes sync.Map // status code -> *atomic.Int64
	count := func(code int) {
		v, _ := codes.LoadOrStore(code, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range *connections {
		wg.Go(func() {
			dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*source)}, Timeout: 5 * time.Second}
			transport := &http.Transport{DialContext: dialer.DialContext, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
			defer transport.CloseIdleConnections()
			c := &http.Client{Transport: transport, Timeout: 15 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req := request(*base, *kind, *clientID, *clientSecret, *workspace)
				resp, err := c.Do(req)
				if err != nil {
					count(0)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				count(resp.StatusCode)
			}
		})
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	<-signals
	close(stop)
	wg.Wait()
	out := map[string]int64{}
	codes.Range(func(k, v any) bool {
		out[fmt.Sprint(k)] = v.(*atomic.Int64).Load()
		return true
	})
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func request(base, kind, clientID, clientSecret, workspace string) *http.Request {
	form := url.Values{}
	endpoint := base + "/oauth2/token"
	switch kind {
	case "token":
		form.Set("grant_type", "client_credentials")
	case "revoke", "refresh":
		raw := make([]byte, 40)
		_, _ = rand.Read(raw)
		raw[16] = 0 // a small generation: well-formed
		token := "lkrt." + workspace + "." + base64.RawURLEncoding.EncodeToString(raw)
		form.Set("client_id", clientID)
		if kind == "revoke" {
			endpoint = base + "/oauth2/revoke"
			form.Set("token", token)
		} else {
			form.Set("grant_type", "refresh_token")
			form.Set("refresh_token", token)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if kind == "token" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	}
	return req
}
