package main

import (
	"flag"
	"fmt"
	"net"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/latchkey-dev/latchkey/authz"
	"github.com/latchkey-dev/latchkey/internal/accesstoken"
)

func runAuthz(args []string) error {
	var (
		o                  authz.Options
		grpcAddr, httpAddr string
		metricsAddr        string
		namespaces         string
		kubeAPIQPS         float64
		kubeAPIBurst       int
	)
	fs := flag.NewFlagSet("authz", flag.ContinueOnError)
	fs.StringVar(&grpcAddr, "grpc-bind-address", ":9001", "address of the Envoy ext_authz gRPC service (h2c, or TLS with --tls-cert-file); \"0\" disables it")
	fs.StringVar(&httpAddr, "http-bind-address", ":8080", "address of HTTP forward-auth (/authz, and /envoy/ for Envoy's HTTP mode), /healthz and /readyz")
	fs.StringVar(&metricsAddr, "metrics-bind-address", ":9090", "address of /metrics; \"0\" disables it")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", "", "serve gRPC and HTTP with TLS with this certificate (PEM)")
	fs.StringVar(&o.TLSKeyFile, "tls-key-file", "", "private key of --tls-cert-file (PEM)")
	fs.StringVar(&o.IssuerURL, "issuer-url", "http://latchkey-tokenserver.latchkey-system.svc", "iss of the access tokens to accept: the token server's --issuer-url")
	fs.StringVar(&o.APIKeyHeader, "api-key-header", "X-API-Key", "header that may carry an API key besides Authorization: Bearer; empty disables it")
	fs.StringVar(&o.Realm, "realm", "latchkey", "realm of the WWW-Authenticate challenge")
	fs.StringVar(&namespaces, "namespaces", "", "comma-separated namespaces whose APIs and credentials to serve; empty means all")
	fs.StringVar(&o.JWKSNamespace, "jwks-namespace", envOr("POD_NAMESPACE", "latchkey-system"), "namespace of the JWKS ConfigMap")
	fs.StringVar(&o.JWKSConfigMap, "jwks-configmap", "latchkey-jwks", "name of the ConfigMap the manager publishes the public signing keys in")
	fs.IntVar(&o.TokenCacheSize, "token-cache-size", accesstoken.DefaultCacheSize, "access tokens whose signature checked out to remember (by SHA-256), so that a token presented again skips the signature check (exp, nbf, iss, the client and the audience are still checked every time); 0 disables")
	fs.DurationVar(&o.LastUsedFlushInterval, "last-used-flush-interval", 10*time.Second, "how often recorded uses are written to status.lastUsedAt")
	fs.DurationVar(&o.LastUsedGranularity, "last-used-granularity", time.Hour, "as the token server's: status.lastUsedAt is the start of the period of this length in which the key was last used (minimum 1m); give both the same value")
	fs.Float64Var(&kubeAPIQPS, "kube-api-qps", 50, "client-side QPS limit towards the API server")
	fs.IntVar(&kubeAPIBurst, "kube-api-burst", 100, "client-side burst towards the API server")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	o.Log = ctrl.Log.WithName("authz")
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return fmt.Errorf("--tls-cert-file and --tls-key-file go together")
	}
	o.Namespaces = splitList(namespaces)
	cfg, err := kubeConfig(kubeAPIQPS, kubeAPIBurst)
	if err != nil {
		return err
	}
	for _, l := range []struct {
		addr string
		to   *net.Listener
	}{{grpcAddr, &o.GRPCListener}, {httpAddr, &o.HTTPListener}, {metricsAddr, &o.MetricsListener}} {
		if l.addr == "0" {
			continue
		}
		if *l.to, err = net.Listen("tcp", l.addr); err != nil {
			return err
		}
	}
	o.Log.Info("serving", "grpc", grpcAddr, "http", httpAddr, "issuer", o.IssuerURL)
	return authz.Run(ctrl.SetupSignalHandler(), cfg, o)
}
