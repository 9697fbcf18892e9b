// Command partnerapp is the third-party app of `make demo`: a partner's CRM that
// customers install into their workspace with OAuth 2.0 authorization_code + PKCE.
// It serves its redirect URI, prints the authorization URL a person opens in a
// browser, and, when the browser comes back, checks state and iss (RFC 9207),
// exchanges the code with golang.org/x/oauth2, calls the leads API through the
// proxy, refreshes, and calls it again.
//
// In the demo's one-shot mode it also plays the person: with --drive=browser it
// drives headless Chromium (chromedp) through the provider's login form and the
// consent page; with --drive=http an HTTP client with a cookie jar submits the same
// forms. It exits 0 once the app has called the API with a refreshed token.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/latchkey-dev/latchkey/internal/testenv"
)

type options struct {
	issuer, clientID, clientSecret, listen, api, scope    string
	drive, chromium, user, password, workspace, tokenFile string
}

func main() {
	var o options
	flag.StringVar(&o.issuer, "issuer", "", "the token server's issuer URL")
	flag.StringVar(&o.clientID, "client-id", "", "the app's client_id")
	flag.StringVar(&o.clientSecret, "client-secret", "", "the app's client_secret (read from its Secret)")
	flag.StringVar(&o.listen, "listen-address", "127.0.0.1:0", "where the app serves its redirect URI, /callback")
	flag.StringVar(&o.api, "api", "", "the URL the app calls with its token (the leads API through the proxy)")
	flag.StringVar(&o.scope, "scope", "leads:read", "the scopes the app asks for")
	flag.StringVar(&o.drive, "drive", "none", "who approves: none (a person, in their browser), browser (headless Chromium), http (an HTTP client submitting the forms)")
	flag.StringVar(&o.chromium, "chromium", "chromium", "the Chromium binary, for --drive=browser")
	flag.StringVar(&o.user, "user", "", "the user who signs in, for --drive=browser|http")
	flag.StringVar(&o.password, "password", "", "their password, for --drive=browser|http")
	flag.StringVar(&o.workspace, "workspace", "", "the workspace to install the app into, for --drive=browser|http")
	flag.StringVar(&o.tokenFile, "token-file", "", "where to write the app's last access token (mode 0600), for the demo's next steps")
	flag.Parse()
	if err := run(o); err != nil {
		log.Fatalf("partnerapp: %v", err)
	}
}

func run(o options) error {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	redirect := "http://" + ln.Addr().String() + "/callback"
	cfg := &oauth2.Config{ClientID: o.clientID, ClientSecret: o.clientSecret, RedirectURL: redirect, Scopes: []string{o.scope},
		Endpoint: oauth2.Endpoint{AuthURL: o.issuer + "/oauth2/authorize", TokenURL: o.issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	verifier, state := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
	fmt.Printf("redirect_uri: %s\nauthorize: %s\n", redirect, authURL)

	done := make(chan error, 1)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		summary, err := finish(r.Context(), o, cfg, r.URL.Query(), state, verifier)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		} else {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, "<!doctype html><title>Acme CRM</title><h1 id=done>Acme CRM is installed</h1><pre>%s</pre>", html.EscapeString(summary))
		}
		fmt.Println(summary)
		select {
		case done <- err:
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	switch o.drive {
	case "none":
		fmt.Println("open the authorize URL above in a browser; Ctrl-C stops the app")
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
		<-stop
		return nil
	case "browser":
		go func() {
			if err := driveBrowser(o, authURL); err != nil {
				done <- err
			}
		}()
	case "http":
		go func() {
			if err := driveHTTP(o, authURL); err != nil {
				done <- err
			}
		}()
	default:
		return fmt.Errorf("unknown --drive %q", o.drive)
	}
	select {
	case err := <-done:
		return err
	case <-time.After(90 * time.Second):
		return errors.New("the flow did not come back to the app within 90s")
	}
}

// finish is the app's side of the redirect: RFC 6749 state, RFC 9207 iss, the code
// exchange with PKCE, a call, a refresh and another call.
func finish(ctx context.Context, o options, cfg *oauth2.Config, q url.Values, state, verifier string) (string, error) {
	if q.Get("error") != "" {
		return "", fmt.Errorf("the authorization was refused: %s (%s)", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != state || q.Get("iss") != o.issuer {
		return "", errors.New("the response's state or iss is not this app's request's")
	}
	token, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return "", fmt.Errorf("exchanging the code: %w", err)
	}
	first, err := call(o.api, token.AccessToken)
	if err != nil {
		return "", err
	}
	expired := *token
	expired.Expiry = time.Now().Add(-time.Minute)
	refreshed, err := cfg.TokenSource(ctx, &expired).Token()
	if err != nil {
		return "", fmt.Errorf("refreshing: %w", err)
	}
	second, err := call(o.api, refreshed.AccessToken)
	if err != nil {
		return "", err
	}
	if o.tokenFile != "" {
		if err := os.WriteFile(o.tokenFile, []byte(refreshed.AccessToken), 0o600); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("app: code exchanged (scope %q); GET %s -> %s; refreshed (a new refresh token); GET again -> %s",
		token.Extra("scope"), o.api, first, second), nil
}

func call(api, accessToken string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, api, nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the API answered %s", resp.Status)
	}
	return resp.Status, nil
}

// driveBrowser signs in at the provider's login form and approves on the consent
// page in headless Chromium, as a person would.
func driveBrowser(o options, authURL string) error {
	dir, err := os.MkdirTemp("", "partnerapp-chromium")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), testenv.BrowserOptions(o.chromium, filepath.Join(dir, "profile"))...)
	defer cancelAlloc()
	browser, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(browser); err != nil {
		return fmt.Errorf("starting Chromium: %w", err)
	}
	step, cancelStep := context.WithTimeout(browser, 60*time.Second)
	defer cancelStep()
	return chromedp.Do(step, testenv.SignInSteps(authURL, o.user, o.password), testenv.ApproveSteps(o.workspace))
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// driveHTTP submits the same forms with an HTTP client that keeps cookies.
func driveHTTP(o options, authURL string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.Get(authURL)
	if err != nil {
		return err
	}
	if resp, err = testenv.SubmitOIDCLogin(c, resp, o.user, o.password); err != nil {
		return err
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	m := csrfField.FindSubmatch(page)
	if m == nil {
		return fmt.Errorf("no consent form at %s", resp.Request.URL)
	}
	resp, err = c.PostForm(o.issuer+"/oauth2/consent", url.Values{"csrf": {string(m[1])}, "action": {"approve"}, "workspace": {o.workspace}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
