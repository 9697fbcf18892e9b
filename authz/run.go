package authz

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/latchkey-dev/latchkey/internal/index"
)

// Options configure `latchkey authz`.
type Options struct {
	// GRPCListener serves Envoy ext_authz (h2c, or TLS with the cert files);
	// HTTPListener forward-auth and the probes; MetricsListener /metrics. Any may be nil.
	GRPCListener, HTTPListener, MetricsListener net.Listener
	TLSCertFile, TLSKeyFile                     string
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
	// LastUsedFlushInterval and LastUsedGranularity: as the token server's.
	LastUsedFlushInterval, LastUsedGranularity time.Duration
	Clock                                      clock.PassiveClock
	Log                                        logr.Logger
	Registry                                   *prometheus.Registry
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	if o.IssuerURL == "" {
		return errors.New("the issuer URL is required: access tokens are accepted only from it")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reader, err := index.StartReader(ctx, cfg, index.ReaderOptions{
		Component: "authz", Namespaces: o.Namespaces, LastUsedFlushInterval: o.LastUsedFlushInterval,
		LastUsedGranularity: o.LastUsedGranularity, Clock: o.Clock, Log: o.Log, Registry: o.Registry,
	})
	if err != nil {
		return err
	}
	o.Registry = reader.Registry
	idx, jwks := reader.Index, &JWKS{CacheSize: o.TokenCacheSize}
	a := &Authorizer{Index: idx, Keys: jwks, Issuer: o.IssuerURL, APIKeyHeader: strings.ToLower(o.APIKeyHeader),
		Usage: reader.Usage, Clock: reader.Clock}
	srv := NewServer(a, o.Realm, o.Registry)
	jwksInformer := watchJWKS(ctx, reader.Clientset, o.JWKSNamespace, o.JWKSConfigMap, jwks, func(err error) {
		o.Log.Error(err, "JWKS not loaded; keeping the previous keys", "configMap", o.JWKSNamespace+"/"+o.JWKSConfigMap)
	})
	go func() {
		if reader.Feeds.WaitSynced(ctx) && toolscache.WaitForCacheSync(ctx.Done(), jwksInformer.HasSynced) {
			srv.SetReady()
			hashes, clients := idx.Sizes()
			known, served := idx.APIs()
			o.Log.Info("caches synced", "apiKeyHashes", hashes, "oauthClients", clients, "apis", known, "servedAPIs", served,
				"jwksKeys", jwks.Verifier().Size())
		}
	}()
	return srv.serve(ctx, o)
}

// serve runs every listener until ctx ends, then stops them gracefully.
func (s *Server) serve(ctx context.Context, o Options) error {
	var tlsConfig *tls.Config
	if o.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return err
		}
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	errs := make(chan error, 3)
	running := 0
	if o.GRPCListener != nil {
		running++
		var opts []grpc.ServerOption
		if tlsConfig != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
		}
		g := s.GRPCServer(opts...)
		go func() { errs <- g.Serve(o.GRPCListener) }()
		go func() { <-ctx.Done(); stopGracefully(g) }()
	}
	for _, l := range []struct {
		listener net.Listener
		handler  http.Handler
		tls      bool
	}{
		{o.HTTPListener, s.Handler(), tlsConfig != nil},
		{o.MetricsListener, promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{}), false},
	} {
		if l.listener == nil {
			continue
		}
		running++
		h := &http.Server{Handler: l.handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10, TLSConfig: tlsConfig}
		go func() {
			if l.tls {
				errs <- h.ServeTLS(l.listener, "", "")
				return
			}
			errs <- h.Serve(l.listener)
		}()
		go func() {
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = h.Shutdown(shutdown)
		}()
	}
	var all []error
	for range running {
		if err := <-errs; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// GRPCServer is a gRPC server with the ext_authz Authorization service. A
// request's metadata and message are bounded (Envoy's checks are a few KiB).
func (s *Server) GRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.MaxRecvMsgSize(256<<10), grpc.MaxHeaderListSize(64<<10))
	g := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(g, grpcServer{s})
	return g
}

// stopGracefully lets in-flight checks finish for up to 10 s.
func stopGracefully(g *grpc.Server) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		g.Stop()
	}
}
