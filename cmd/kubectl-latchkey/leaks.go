package main

// The leak commands: check-leaks (a gitleaks report, down to the keys that are
// real) and report-leak (credentials found somewhere, to the token server's
// POST /credentials/revoke). Neither ever prints a credential.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/leakscan"
)

const (
	// revocationPath is tokenserver.CredentialRevocationPath, and revokeBatch
	// leaks.MaxRevokeCredentials (the test checks both): the plugin does not link
	// the token server.
	revocationPath = "/credentials/revoke"
	revokeBatch    = 1000

	// defaultService is the token server's Service, as config/default and the
	// Helm chart (without TLS) name it.
	defaultService = "latchkey-system/latchkey-tokenserver:http"

	reportedMessage = "reported %d credential(s); a live one stops working within a second\n"
)

// exitError ends the plugin with status code; err, when set, is printed first.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitStatus prints err (if any) to stderr and returns the plugin's exit status.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var e *exitError
	if errors.As(err, &e) {
		if e.err != nil {
			fmt.Fprintln(stderr, "error:", e.err)
		}
		return e.code
	}
	fmt.Fprintln(stderr, "error:", err)
	return 1
}

// checkLeaksCommand: check-leaks [FILE|-].
func checkLeaksCommand() *cobra.Command {
	var output string
	usageError := func(err error) error { return &exitError{code: 2, err: err} }
	cmd := &cobra.Command{
		Use:   "check-leaks [FILE|-]",
		Short: "filter a gitleaks JSON report down to real keys (checksum holds); key IDs only",
		Long: `check-leaks reads a gitleaks JSON report (gitleaks --report-format json, run with
config/scanning/gitleaks.toml) from FILE, or standard input when FILE is - or
absent. It drops the findings of rule ` + leakscan.RuleID + ` whose checksum is
wrong (a typo, a truncated copy, a made-up example: gitleaks cannot check a
checksum), keeps every finding of other rules, and prints what is left, one line
each, never a secret:

  FILE:LINE RULE keyID=<key ID> commit=<short SHA>

or, with -o json, a gitleaks JSON report with Secret and Match redacted and a
KeyID field. A summary goes to standard error.

Exit status: 0 when nothing is left, 1 when a finding is left (a real Latchkey
key, or a finding of another rule, such as gitleaks' default ones), 2 on an
error (an unreadable report, a report written with --redact).`,
		Example: `  gitleaks git --pre-commit --staged --config config/scanning/gitleaks.toml \
    --report-format json --report-path - --exit-code 0 | kubectl latchkey check-leaks -`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.MaximumNArgs(1)(cmd, args); err != nil {
				return usageError(err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" {
				return usageError(fmt.Errorf("--output %q: want json, or nothing for one line per finding", output))
			}
			in, name := cmd.InOrStdin(), "standard input"
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return usageError(err)
				}
				defer f.Close()
				in, name = f, args[0]
			} else if isTerminal(in) {
				return usageError(errors.New("check-leaks reads a gitleaks JSON report: pipe one in, or name its FILE"))
			}
			findings, err := leakscan.ReadReport(in)
			if err != nil {
				return usageError(fmt.Errorf("%s: %w", name, err))
			}
			kept, dropped, err := leakscan.Filter(findings)
			if err != nil {
				return usageError(err)
			}
			if output == "json" {
				err = leakscan.WriteJSON(cmd.OutOrStdout(), kept)
			} else {
				err = leakscan.WriteLines(cmd.OutOrStdout(), kept)
			}
			if err != nil {
				return usageError(err)
			}
			keys := 0
			for _, f := range kept {
				if f.RuleID == leakscan.RuleID {
					keys++
				}
			}
			wrong := fmt.Sprintf("%d key-shaped string(s) with a wrong checksum dropped", dropped)
			if len(kept) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "check-leaks: no leaks (%s)\n", wrong)
				return nil
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "check-leaks: %d leak(s): %d Latchkey API key(s), %d finding(s) of other rules (%s)\n",
				len(kept), keys, len(kept)-keys, wrong)
			if keys > 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "check-leaks: a key that left this machine is leaked: revoke it with kubectl latchkey report-leak < FILE")
			}
			return &exitError{code: 1}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "json for a gitleaks JSON report (secrets redacted, KeyID added); default one line per finding")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	return cmd
}

// isTerminal: r is a terminal, where a report would never end.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// reportLeakOptions are report-leak's flags.
type reportLeakOptions struct {
	filename, url, service string
}

// reportLeakCommand: report-leak [-f FILE] [--url URL | --service NS/NAME:PORT].
func (o *options) reportLeakCommand(ctx context.Context) *cobra.Command {
	ro := &reportLeakOptions{}
	cmd := &cobra.Command{
		Use:   "report-leak [-f FILE] [--url URL | --service NAMESPACE/NAME:PORT]",
		Short: "revoke leaked credentials, read one per line from standard input or -f FILE",
		Long: `report-leak reads credentials, one per line, from standard input or -f FILE
(never from the command line, where shell history and ps would keep them): API
keys, and OAuth clients as client_id:client_secret (a client secret alone cannot
be told from any hex string). Blank lines and lines starting with # are skipped.
It posts them to the token server's POST ` + revocationPath + `, which revokes
the live ones (as a report of reporter self) and answers the same whatever it
found: so report-leak cannot tell, and does not say, whether any was live.

By default it goes through the API server's service proxy to the token server's
Service (--service, default ` + defaultService + `)
with the kubeconfig, which needs create on services/proxy in that namespace.
With --url it calls the token server directly (its public URL, such as
https://auth.example.com) and reads no kubeconfig.

A line that is neither a well-formed API key (checksum included) nor
client_id:client_secret is not sent; it is named by its line number, never its
content, and report-leak exits 1 after reporting the others.`,
		Example: `  kubectl latchkey report-leak < found-key.txt
  kubectl latchkey report-leak -f found-keys.txt --url https://auth.example.com`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				// Never echo the argument: it may be a credential.
				return errors.New("report-leak takes no argument: it reads the credentials from standard input or -f FILE, " +
					"so that they stay out of shell history and ps (a credential typed on the command line is in your shell history now)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.reportLeak(ctx, cmd, ro)
		},
	}
	cmd.Flags().StringVarP(&ro.filename, "filename", "f", "", "read the credentials from FILE (- or nothing: standard input)")
	cmd.Flags().StringVar(&ro.url, "url", "", "the token server's URL (https://auth.example.com), called directly, without the kubeconfig")
	cmd.Flags().StringVar(&ro.service, "service", defaultService,
		"the token server's Service, NAMESPACE/NAME:PORT, reached through the API server's service proxy (PORT https or 443: TLS)")
	cmd.MarkFlagsMutuallyExclusive("url", "service")
	return cmd
}

func (o *options) reportLeak(ctx context.Context, cmd *cobra.Command, ro *reportLeakOptions) error {
	// Where to, first: nothing is read (perhaps typed) for a request that cannot be made.
	endpoint, client, err := o.revocationEndpoint(ro)
	if err != nil {
		return err
	}
	in := cmd.InOrStdin()
	if ro.filename != "" && ro.filename != "-" {
		if looksLikeCredential(ro.filename) {
			return errors.New("-f names a file; the credential itself goes in the file, or on standard input")
		}
		f, err := os.Open(ro.filename)
		if err != nil {
			// Not the path: it may be a mistyped credential.
			if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
				err = pe.Err
			}
			return fmt.Errorf("-f: %w", err)
		}
		defer f.Close()
		in = f
	} else if isTerminal(in) {
		fmt.Fprintln(cmd.ErrOrStderr(), "Reading credentials from the terminal, one per line; end with Ctrl-D.")
	}
	creds, problems, err := readCredentials(in)
	if err != nil {
		return err
	}
	var invalid error
	if len(problems) > 0 {
		invalid = fmt.Errorf("not reported: %s", strings.Join(problems, "; "))
	}
	if len(creds) == 0 {
		if invalid != nil {
			return invalid
		}
		return errors.New("no credential to report (one per line, on standard input or in -f FILE)")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	sent := 0
	for start := 0; start < len(creds); start += revokeBatch {
		batch := creds[start:min(start+revokeBatch, len(creds))]
		if err := postRevocation(ctx, client, endpoint, batch); err != nil {
			if sent > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), reportedMessage, sent)
			}
			return fmt.Errorf("%d credential(s) not reported: %w", len(creds)-sent, err)
		}
		sent += len(batch)
	}
	fmt.Fprintf(cmd.OutOrStdout(), reportedMessage, sent)
	return invalid
}

// looksLikeCredential: s is an API key or a client_id:client_secret.
func looksLikeCredential(s string) bool {
	return credentialProblem(s) == ""
}

// credentialProblem says why s is no credential the endpoint revokes; "" when it is one.
func credentialProblem(s string) string {
	if _, err := credential.ParseAPIKey(s); err == nil {
		return ""
	}
	if id, secret, ok := strings.Cut(s, ":"); ok {
		if credential.ValidClientID(id) && credential.ValidClientSecret(secret) {
			return ""
		}
		return "not client_id:client_secret (24 and 64 lowercase hex digits)"
	}
	if credential.ValidClientSecret(s) {
		return "an OAuth client secret alone: give it as client_id:client_secret"
	}
	if leakscanShape.MatchString(s) {
		return "an API key with a wrong checksum (a typo, or a truncated copy)"
	}
	return "neither an API key nor client_id:client_secret"
}

var leakscanShape = regexp.MustCompile(`^(?:` + leakscan.SecretPattern + `)$`)

// maxCredentialLine bounds a line of report-leak's input.
const maxCredentialLine = 4096

// readCredentials reads one credential a line, trimmed, without blank lines,
// #-comments and repeats. A line that is no credential is left out and described
// in problems by its number and the reason, never its content.
func readCredentials(r io.Reader) (creds, problems []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxCredentialLine)
	seen := map[string]bool{}
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if p := credentialProblem(s); p != "" {
			problems = append(problems, fmt.Sprintf("line %d: %s", line, p))
			continue
		}
		if !seen[s] {
			seen[s] = true
			creds = append(creds, s)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("line %d: longer than %d bytes: not a credential", line+1, maxCredentialLine)
		}
		return nil, nil, err
	}
	return creds, problems, nil
}

// revocationEndpoint is --url's POST /credentials/revoke, or the API server's
// service proxy to --service's, with the HTTP client to call it. Neither follows
// a redirect: the body holds the credentials.
func (o *options) revocationEndpoint(ro *reportLeakOptions) (string, *http.Client, error) {
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if ro.url != "" {
		u, err := directURL(ro.url)
		if err != nil {
			return "", nil, err
		}
		return u, &http.Client{CheckRedirect: noRedirect}, nil
	}
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return "", nil, err
	}
	u, err := proxyURL(cfg, ro.service)
	if err != nil {
		return "", nil, err
	}
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", nil, err
	}
	client.CheckRedirect = noRedirect
	return u, client, nil
}

// directURL is the revocation endpoint under the token server's URL: https, or
// http to a loopback address only (the body holds the credentials).
func directURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("--url %q: want the token server's URL, such as https://auth.example.com", raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return "", fmt.Errorf("--url %q: https, please: the request carries the credentials (http only to localhost)", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + revocationPath
	u.RawPath = ""
	return u.String(), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	portName = regexp.MustCompile(`^(?:[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?)$`)
)

// proxyURL is the API server's service proxy to the revocation endpoint of
// service (NAMESPACE/NAME:PORT): /api/v1/namespaces/NAMESPACE/services/SCHEME:NAME:PORT/proxy/credentials/revoke.
func proxyURL(cfg *rest.Config, service string) (string, error) {
	ns, after, okNS := strings.Cut(service, "/")
	name, port, okPort := strings.Cut(after, ":")
	if !okNS || !okPort || !dnsLabel.MatchString(ns) || !dnsLabel.MatchString(name) || !portName.MatchString(port) {
		return "", fmt.Errorf("--service %q: want NAMESPACE/NAME:PORT, such as %s", service, defaultService)
	}
	scheme := "http"
	if n, err := strconv.Atoi(port); port == "https" || (err == nil && n == 443) {
		scheme = "https"
	}
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return "", err
	}
	u := *base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1/namespaces/" + ns + "/services/" + scheme + ":" + name + ":" + port + "/proxy" + revocationPath
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String(), nil
}

// maxErrorBody bounds what is read of an error answer.
const maxErrorBody = 4096

// postRevocation posts {"credentials": creds} to endpoint. Any 2xx is success (the
// token server answers 204 whatever it found). An error answer is described by
// its status and message, with any of creds in it redacted.
func postRevocation(ctx context.Context, client *http.Client, endpoint string, creds []string) error {
	body, err := json.Marshal(map[string][]string{"credentials": creds})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kubectl-latchkey")
	resp, err := client.Do(req)
	if err != nil {
		return err // a *url.Error: the method, the URL and the cause, never the body
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	// Credentials hold no character JSON or Go quoting escapes: redacted in the
	// raw answer, they are redacted in the message.
	text := string(answer)
	for _, c := range creds {
		text = strings.ReplaceAll(text, c, leakscan.Redacted)
	}
	msg := describeAnswer([]byte(text))
	return fmt.Errorf("POST %s: %s: %s", redactURL(endpoint), resp.Status, msg)
}

// describeAnswer is the message of an error body: the token server's OAuth-style
// {"error", "error_description"}, the API server's Status {"message"}, or the
// first line of text.
func describeAnswer(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Message     string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		switch {
		case e.Error != "" && e.Description != "":
			return e.Error + ": " + e.Description
		case e.Error != "":
			return e.Error
		case e.Message != "":
			return e.Message
		}
	}
	text, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	if text == "" {
		return "no message"
	}
	return strconv.Quote(text)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}
