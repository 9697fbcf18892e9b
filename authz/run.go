package authz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/latchkey-dev/latchkey/internal/ascii"
	"github.com/latchkey-dev/latchkey/internal/ratelimit"
	"github.com/latchkey-dev/latchkey/internal/serve"
)

// Options configure `latchkey authz`.
type Options struct {
	// GRPCListener serves Envoy ext_authz (h2c, or TLS with the cert files);
	// HTTPListener forward-auth and the probes; MetricsListener /metrics. Any may be nil.
	GRPCListener, HTTPListener, MetricsListener net.Listener
	// PprofListener serves Go's /debug/pprof (nil: none).
	PprofListener net.Listener
	// BenchmarkFloor serves make bench's no-op endpoints (serve.FloorPath); never in production.
	BenchmarkFloor          bool
	TLSCertFile, TLSKeyFile string
	// IssuerURL is the iss every accepted access token carries (the token server's --issuer-url).
	IssuerURL string
	// APIKeyHeader may carry an API key besides Authorization ("" disables it).
	APIKeyHeader string
	// Realm is the WWW-Authenticate realm.
	Realm string
	// Namespaces to watch; empty means all.
	Namespaces []string
	// JWKSNamespace and JWKSConfigMap locate the public keys the manager publishes.
	JWKSNamespace, JWKSConfigMap string
	// TokenCacheSize bounds the cache of verified access tokens (0 disables it).
	TokenCacheSize int
	// RateLimitService names the authorizer's own Service in RateLimitNamespace:
	// each replica enforces its share of every rate limit, the limit divided by
	// the Service's ready endpoints. Empty: this replica enforces whole limits.
	RateLimitService, RateLimitNamespace string
	// MaxRateLimitBudgets bounds the budgets (credential × API × rule) counted at
	// once (default 1,000,000: about 90 MB), MaxRateLimitBudgetsPerNamespace
	// those of one namespace's credentials (default a sixteenth of them).
	MaxRateLimitBudgets, MaxRateLimitBudgetsPerNamespace int
	// LastUsedFlushInterval and LastUsedGranularity: as the token server's.
	LastUsedFlushInterval, LastUsedGranularity time.Duration
	Clock                                      clock.PassiveClock
	Log                                        logr.Logger
	Registry                                   *prometheus.Registry
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	if err := o.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	caches, err := serve.StartCaches(ctx, cfg, serve.CacheOptions{
		Component: "authz", Namespaces: o.Namespaces, LastUsedFlushInterval: o.LastUsedFlushInterval,
		LastUsedGranularity: o.LastUsedGranularity, Clock: o.Clock, Log: o.Log, Registry: o.Registry,
	})
	if err != nil {
		return err
	}
	o.Registry = caches.Registry
	idx, jwks := caches.Index, &JWKS{CacheSize: o.TokenCacheSize}
	if o.MaxRateLimitBudgets <= 0 {
		o.MaxRateLimitBudgets = 1_000_000
	}
	if o.MaxRateLimitBudgetsPerNamespace <= 0 {
		o.MaxRateLimitBudgetsPerNamespace = o.MaxRateLimitBudgets / 16
	}
	limits := ratelimit.New(o.MaxRateLimitBudgets, o.MaxRateLimitBudgetsPerNamespace)
	a := &Authorizer{Index: idx, Keys: jwks, Issuer: o.IssuerURL, APIKeyHeader: strings.ToLower(o.APIKeyHeader), // ASCII: validated
		Usage: caches.LastUsed, Clock: caches.Clock, Limits: limits}
	srv := NewServer(a, o.Realm, o.Registry)
	go sweepBudgets(ctx, limits, caches.Clock)
	synced := []toolscache.InformerSynced{caches.Feeds.HasSynced}
	if o.RateLimitService != "" {
		synced = append(synced, watchReplicas(ctx, caches.Clientset, o.RateLimitNamespace, o.RateLimitService, limits).HasSynced)
	}
	jwksInformer := watchJWKS(ctx, caches.Clientset, o.JWKSNamespace, o.JWKSConfigMap, jwks, func(err error) {
		o.Log.Error(err, "JWKS not loaded; keeping the previous keys", "configMap", o.JWKSNamespace+"/"+o.JWKSConfigMap)
	})
	srv.readiness.WhenSynced(ctx, func() {
		hashes, clients := idx.Sizes()
		known, served := idx.APIs()
		o.Log.Info("caches synced", "apiKeyHashes", hashes, "oauthClients", clients, "apis", known, "servedAPIs", served,
			"jwksKeys", jwks.Verifier().Size())
	}, append(synced, jwksInformer.HasSynced)...)
	c := serve.Config{TLSCertFile: o.TLSCertFile, TLSKeyFile: o.TLSKeyFile, Metrics: o.MetricsListener,
		Registry: o.Registry, Pprof: o.PprofListener, Floor: o.BenchmarkFloor, Readiness: srv.readiness}
	if o.HTTPListener != nil {
		c.HTTP = []serve.HTTP{{Listener: o.HTTPListener, Handler: srv.Handler()}}
	}
	if o.GRPCListener != nil {
		var opts []grpc.ServerOption
		if o.TLSCertFile != "" {
			tlsConfig, err := serve.TLSConfig(o.TLSCertFile, o.TLSKeyFile)
			if err != nil {
				return err
			}
			opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
		}
		c.GRPC = &serve.GRPC{Listener: o.GRPCListener, Server: srv.GRPCServer(opts...)}
	}
	return serve.Run(ctx, c)
}

// validate refuses options under which the gate would not be the one configured.
func (o Options) validate() error {
	if o.IssuerURL == "" {
		return errors.New("the issuer URL is required: access tokens are accepted only from it")
	}
	if h := o.APIKeyHeader; h != "" {
		// Matched against header names in ASCII case only: a name outside the token
		// grammar (a space, a colon, a Kelvin sign that strings.ToLower folds to
		// 'k') would match no header a proxy sends, or one it did not mean.
		if !httpguts.ValidHeaderFieldName(h) {
			return fmt.Errorf("the API-key header %q is not an HTTP header name", h)
		}
		if ascii.EqualFold(h, "Authorization") {
			return errors.New("the API-key header cannot be Authorization, which carries Bearer credentials already: name another header, or none")
		}
	}
	return nil
}

// sweepBudgets drops the budgets that are whole again, once a minute: memory
// follows the credentials in use, not every one ever seen.
func sweepBudgets(ctx context.Context, limits *ratelimit.Limiter, clk clock.PassiveClock) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			limits.Sweep(clk.Now())
		}
	}
}

// GRPCServer is a gRPC server with the ext_authz Authorization service. A
// request's metadata and message are bounded (Envoy's checks are a few KiB).
func (s *Server) GRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.MaxRecvMsgSize(256<<10), grpc.MaxHeaderListSize(serve.MaxHeaderBytes),
		grpc.ForceServerCodecV2(newCheckCodec(s.authorizer.APIKeyHeader)))
	g := grpc.NewServer(opts...)
	g.RegisterService(&authorizationService, grpcServer{s})
	return g
}
