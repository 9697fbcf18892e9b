package main

import (
	"flag"
	"net"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/latchkey-dev/latchkey/authz"
	"github.com/latchkey-dev/latchkey/internal/accesstoken"
)

func runAuthz(args []string) error {
	var (
		o                  authz.Options
		common             dataPlaneFlags
		grpcAddr, httpAddr string
	)
	fs := flag.NewFlagSet("authz", flag.ContinueOnError)
	common.bind(fs, "APIs and credentials")
	fs.StringVar(&grpcAddr, "grpc-bind-address", ":9001", "address of the Envoy ext_authz gRPC service (h2c, or TLS with --tls-cert-file); \"0\" disables it")
	fs.StringVar(&httpAddr, "http-bind-address", ":8080", "address of HTTP forward-auth (/authz, and /envoy/ for Envoy's HTTP mode), /healthz and /readyz")
	fs.StringVar(&o.IssuerURL, "issuer-url", "http://latchkey-tokenserver.latchkey-system.svc", "iss of the access tokens to accept: the token server's --issuer-url")
	fs.StringVar(&o.APIKeyHeader, "api-key-header", "X-API-Key", "header that may carry an API key besides Authorization: Bearer; empty disables it")
	fs.StringVar(&o.Realm, "realm", "latchkey", "realm of the WWW-Authenticate challenge")
	fs.StringVar(&o.JWKSNamespace, "jwks-namespace", envOr("POD_NAMESPACE", "latchkey-system"), "namespace of the JWKS ConfigMap")
	fs.StringVar(&o.JWKSConfigMap, "jwks-configmap", "latchkey-jwks", "name of the ConfigMap the manager publishes the public signing keys in")
	fs.IntVar(&o.TokenCacheSize, "token-cache-size", accesstoken.DefaultCacheSize, "access tokens whose signature checked out to remember (by SHA-256), so that a token presented again skips the signature check (exp, nbf, iss, the client and the audience are still checked every time); 0 disables")
	fs.StringVar(&o.RateLimitService, "rate-limit-service", "", "the authorizer's own Service, in $POD_NAMESPACE: each replica enforces its share of every rate limit, the limit divided by the Service's ready endpoints (its EndpointSlices); empty: this replica enforces whole limits (one replica)")
	fs.IntVar(&o.MaxRateLimitBudgets, "max-rate-limit-budgets", 1_000_000, "rate limit budgets (credential × API × rule) counted at once, about 90 bytes each; budgets whole again are dropped every minute, and beyond the bound a new budget's request is refused with 429 (latchkey_authz_rate_limit_no_room_total)")
	fs.IntVar(&o.MaxRateLimitBudgetsPerNamespace, "max-rate-limit-budgets-per-namespace", 0, "budgets of one namespace's credentials counted at once (0: a sixteenth of --max-rate-limit-budgets): a tenant that creates credentials and APIs by the thousand fills its own share only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := common.setUp()
	if err != nil {
		return err
	}
	o.Log = ctrl.Log.WithName("authz")
	o.TLSCertFile, o.TLSKeyFile = common.tlsCertFile, common.tlsKeyFile
	o.BenchmarkFloor = common.benchmarkFloor
	o.Namespaces = splitList(common.namespaces)
	o.RateLimitNamespace = envOr("POD_NAMESPACE", "latchkey-system")
	o.LastUsedFlushInterval, o.LastUsedGranularity = common.lastUsedFlush, common.lastUsedGranularity
	for _, l := range []struct {
		addr string
		to   *net.Listener
	}{{grpcAddr, &o.GRPCListener}, {httpAddr, &o.HTTPListener}, {common.metricsAddr, &o.MetricsListener}, {common.pprofAddr, &o.PprofListener}} {
		if *l.to, err = listen(l.addr); err != nil {
			return err
		}
	}
	o.Log.Info("serving", "grpc", grpcAddr, "http", httpAddr, "issuer", o.IssuerURL)
	return authz.Run(ctrl.SetupSignalHandler(), cfg, o)
}
