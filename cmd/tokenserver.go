package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/yaml"

	"github.com/latchkey-dev/latchkey/internal/signingkeys"
	"github.com/latchkey-dev/latchkey/tokenserver"
	"github.com/latchkey-dev/latchkey/tokenserver/leaks"
	"github.com/latchkey-dev/latchkey/tokenserver/thirdparty"
)

func runTokenServer(args []string) error {
	var (
		o          tokenserver.Options
		common     dataPlaneFlags
		listenAddr string
	)
	fs := flag.NewFlagSet("tokenserver", flag.ContinueOnError)
	common.bind(fs, "APIKeys and OAuthClients")
	fs.StringVar(&o.IssuerURL, "issuer-url", "http://latchkey-tokenserver.latchkey-system.svc", "issuer of access tokens (iss) and base of the endpoint URLs in the metadata")
	fs.StringVar(&o.SigningAlgorithm, "signing-algorithm", signingkeys.RS256, "RS256, ES256 or EdDSA; the manager must keep keys for it (--signing-algorithms)")
	fs.StringVar(&listenAddr, "listen-address", ":8080", "address of the OAuth endpoints, /healthz and /readyz")
	fs.StringVar(&o.SigningKeyNamespace, "signing-key-namespace", envOr("POD_NAMESPACE", "latchkey-system"), "namespace of the signing-key Secret")
	fs.StringVar(&o.SigningKeySecret, "signing-key-secret", "latchkey-signing-keys", "name of the signing-key Secret")
	fs.Int64Var(&o.MaxBodyBytes, "max-body-bytes", 16<<10, "largest request body accepted")
	fs.IntVar(&o.ConcurrentRequests, "concurrent-requests", 0, "requests served at once; the others wait in their caller's queue, and each seat that frees up goes to the waiting caller that holds the fewest (0: GOMAXPROCS less one, at least one: a core stays free to read and answer requests while callers keep the others busy signing)")
	fs.IntVar(&o.MaxRequestsInFlight, "max-requests-in-flight", 256, "requests served or waiting, over all callers; beyond it, or after 250 ms in a queue, a request gets 503 with Retry-After")
	fs.IntVar(&o.QueuePerCaller, "max-requests-queued-per-caller", 32, "requests one caller (a client_id, or a source address for requests that prove nothing) may have waiting; beyond it its requests get 503")
	fs.DurationVar(&o.OverloadSchedulingLatency, "overload-scheduling-latency", 50*time.Millisecond, "while the Go scheduler's 90th-percentile latency over 100 ms exceeds this (the CPU is behind), refuse (503, Retry-After) the requests of callers that already have one in; 0 disables")
	fs.DurationVar(&o.ShedDelay, "overload-shed-delay", time.Second, "hold the 503 to a caller whose queue is full, or who has requests in while the CPU is behind, this long: a flood over keep-alive connections then sends far fewer requests; negative: none")
	fs.IntVar(&o.AnonymousRequestsPerSource, "anonymous-requests-per-source", 100, "requests a second that prove nothing (no client secret: public clients, made-up tokens, sign-in pages) from one source address, in bursts twice as large; beyond, 503 after --overload-shed-delay; negative: no budget")
	fs.IntVar(&o.MaxConnectionsPerSource, "max-connections-per-source", 64, "connections served at once from one source address (not a --trusted-proxies one); beyond, a connection waits unread until one of its source's closes (at most 10 s); negative: no bound")
	var trustedProxies string
	fs.StringVar(&trustedProxies, "trusted-proxies", "", "comma-separated CIDRs of the proxies in front of the token server whose X-Forwarded-For names a request's source (the caller of requests that prove nothing); empty: the peer address")
	fs.IntVar(&o.IOConcurrency, "request-io-concurrency", 16, "API-server and upstream-provider calls made on behalf of requests at once (refresh, code redemption, revocation of a family, sign-in, consent), shared fairly by caller")
	fs.DurationVar(&o.IOTimeout, "request-io-timeout", 5*time.Second, "the longest a request waits for, and spends on, its API-server and upstream calls")
	fs.StringVar(&o.StartupCPUProfile, "startup-cpu-profile", "", "write a CPU profile of the start, until the caches are synced, to this file")
	var upstream thirdparty.UpstreamConfig
	var upstreamScopes string
	fs.StringVar(&upstream.IssuerURL, "oidc-issuer-url", "", "issuer of the upstream OpenID provider users sign in at, for third-party apps (authorization_code); empty turns third-party apps off. The --oidc-* flags mirror kube-apiserver's, so a user gets the same name here as in RBAC")
	fs.StringVar(&upstream.ClientID, "oidc-client-id", "", "the token server's client_id at the upstream provider")
	fs.StringVar(&o.UpstreamSecretName, "oidc-client-secret-name", "latchkey-oidc-client", "Secret, in --signing-key-namespace, whose key client-secret holds the upstream client secret; the token server's Role may read it by this name only")
	fs.StringVar(&upstream.UsernameClaim, "oidc-username-claim", "sub", "ID token claim holding the user name (as kube-apiserver's --oidc-username-claim)")
	fs.StringVar(&upstream.UsernamePrefix, "oidc-username-prefix", "", "prefix of user names (as kube-apiserver's): unset means \"<issuer>#\" unless the claim is email; \"-\" means none")
	fs.StringVar(&upstream.GroupsClaim, "oidc-groups-claim", "", "ID token claim holding the user's groups (as kube-apiserver's --oidc-groups-claim)")
	fs.StringVar(&upstream.GroupsPrefix, "oidc-groups-prefix", "", "prefix of group names (as kube-apiserver's --oidc-groups-prefix)")
	fs.StringVar(&upstream.CAFile, "oidc-ca-file", "", "extra CA bundle (PEM) for the upstream provider's TLS certificate")
	fs.DurationVar(&o.UpstreamRevalidation, "upstream-revalidation-interval", time.Hour, "how often, at most, a refresh of a third-party app's token asks the upstream provider (with its refresh token of the user's sign-in) whether the user is still who signed in, and with which groups; the family ends when the provider refuses, or gave no refresh token; 0 never asks (RBAC is asked with the groups of the sign-in)")
	fs.IntVar(&o.SignInsPerMinute, "sign-ins-per-minute-per-source", 60, "each source address's budget of sign-ins (the provider's callbacks, each an upstream call and RBAC reviews), in bursts as large; see --trusted-proxies")
	fs.StringVar(&upstreamScopes, "oidc-scopes", "profile,email,offline_access", "scopes asked of the upstream provider besides openid; offline_access gets the refresh token that revalidates a user (--upstream-revalidation-interval)")
	var leakConfig string
	fs.StringVar(&leakConfig, "secret-scanning-config", "", "YAML file of the secret scanners whose signed reports revoke leaked credentials (POST /secret-scanning/<name>): {reporters: [{name, keysURL | keysFile, headerPrefix, feedback}]}; empty: GitHub's secret scanning partner program, as reporter github")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.LeakReports, err = readLeakConfig(leakConfig); err != nil {
		return err
	}
	cfg, err := common.setUp()
	if err != nil {
		return err
	}
	o.Log = ctrl.Log.WithName("tokenserver")
	o.TLSCertFile, o.TLSKeyFile = common.tlsCertFile, common.tlsKeyFile
	o.BenchmarkFloor = common.benchmarkFloor
	o.LastUsedFlushInterval, o.LastUsedGranularity = common.lastUsedFlush, common.lastUsedGranularity
	if !slices.Contains(signingkeys.SupportedAlgorithms, o.SigningAlgorithm) {
		return fmt.Errorf("unsupported --signing-algorithm %q", o.SigningAlgorithm)
	}
	o.Namespaces = splitList(common.namespaces)
	for _, cidr := range splitList(trustedProxies) {
		prefix, err := netip.ParsePrefix(cidr)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %w", err)
		}
		o.TrustedProxies = append(o.TrustedProxies, prefix.Masked())
	}
	if upstream.IssuerURL != "" {
		if upstream.ClientID == "" {
			return fmt.Errorf("--oidc-client-id is required with --oidc-issuer-url")
		}
		upstream.Scopes = splitList(upstreamScopes)
		o.Upstream = &upstream
	}
	if o.Listener, err = net.Listen("tcp", listenAddr); err != nil {
		return err
	}
	if o.MetricsListener, err = listen(common.metricsAddr); err != nil {
		return err
	}
	if o.PprofListener, err = listen(common.pprofAddr); err != nil {
		return err
	}
	o.Log.Info("serving", "address", o.Listener.Addr().String(), "issuer", o.IssuerURL, "algorithm", o.SigningAlgorithm)
	return tokenserver.Run(ctrl.SetupSignalHandler(), cfg, o)
}

// readLeakConfig reads --secret-scanning-config; GitHub alone without one.
func readLeakConfig(path string) (leaks.Options, error) {
	if path == "" {
		return leaks.Options{Reporters: []leaks.Reporter{leaks.GitHub}}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return leaks.Options{}, fmt.Errorf("--secret-scanning-config: %w", err)
	}
	var o leaks.Options
	if err := yaml.UnmarshalStrict(data, &o); err != nil {
		return leaks.Options{}, fmt.Errorf("--secret-scanning-config %s: %w", path, err)
	}
	return o, nil
}
