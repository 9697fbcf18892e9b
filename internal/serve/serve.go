// Package serve is how the data plane's servers run: the token server and the
// authorizer start their caches with StartCaches, and serve their listeners with
// Run — HTTP and gRPC, TLS, one set of limits and timeouts, metrics and pprof on
// listeners of their own, a readiness that turns true once the caches synced, and
// a shutdown that first stops readiness, then drains connections, then stops.
// Every server of the data plane is served this one way.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	toolscache "k8s.io/client-go/tools/cache"
)

// The limits and timeouts of every listener: bounded reads, writes and idle
// time, so that slow or idle connections cannot pile up (on the metrics and
// pprof listeners as much as on the API ones). Headers may take 64 KiB: the
// authorizer is handed the client's own headers (cookies included) by proxies
// that accept 60 KiB (Envoy's default), and one limit serves both servers.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	// WriteTimeout is the longest a response may take; pprof's leaves room for a
	// 30-second CPU profile or trace (pprof's default).
	WriteTimeout      = 10 * time.Second
	PprofWriteTimeout = 45 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
	// ShutdownGrace is how long requests in flight get once draining is over.
	ShutdownGrace = 10 * time.Second
	// DefaultDrain is how long, at most, a server keeps serving the connections it
	// has, and those that still arrive, after readiness turned false.
	DefaultDrain = 5 * time.Second
	// drainIdle: while draining, a connection idle this long is closed, and the
	// server stops once it has none and no new one came for this long.
	drainIdle = time.Second
)

// Readiness is a server's /readyz: not ready until its caches have synced, and
// not ready again from the moment it starts to shut down, so that load balancers
// stop sending it new requests while it finishes the ones it has.
type Readiness struct {
	synced, stopping atomic.Bool
	// Check, when set, must pass too (the token server: a signing key is loaded).
	Check func() error
}

// Ready says why the server is not ready, or nil.
func (r *Readiness) Ready() error {
	switch {
	case r.stopping.Load():
		return errors.New("shutting down")
	case !r.synced.Load():
		return errors.New("caches not synced")
	case r.Check != nil:
		return r.Check()
	}
	return nil
}

// Handler serves /readyz: 200 "ok", or 503 with the reason.
func (r *Readiness) Handler(w http.ResponseWriter, _ *http.Request) {
	if err := r.Ready(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// MarkSynced makes the server ready (tests that feed an index by hand).
func (r *Readiness) MarkSynced() { r.synced.Store(true) }

// WhenSynced marks the server ready once every synced func reports true, and
// then calls then (nil: nothing): a goroutine, until ctx ends.
func (r *Readiness) WhenSynced(ctx context.Context, then func(), synced ...toolscache.InformerSynced) {
	go func() {
		if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
			return
		}
		r.synced.Store(true)
		if then != nil {
			then()
		}
	}()
}

// HTTP is one listener of an HTTP handler.
type HTTP struct {
	Listener net.Listener
	Handler  http.Handler
}

// GRPC is one listener of a gRPC server.
type GRPC struct {
	Listener net.Listener
	Server   *grpc.Server
}

// Config is what Run serves.
type Config struct {
	// HTTP and GRPC serve the server's API, with TLS when TLSCertFile is set.
	HTTP []HTTP
	GRPC *GRPC
	// TLSCertFile and TLSKeyFile (PEM) turn on TLS on HTTP and GRPC.
	TLSCertFile, TLSKeyFile string
	// Metrics serves Registry's /metrics, Pprof Go's /debug/pprof, each on a
	// listener of its own without TLS; nil: none.
	Metrics  net.Listener
	Registry *prometheus.Registry
	Pprof    net.Listener
	// Floor serves the no-op endpoints under FloorPath on the HTTP listeners, for
	// make bench (floor.go); never in production.
	Floor bool
	// Readiness turns false first when ctx ends.
	Readiness *Readiness
	// Drain is how long, at most, the API listeners keep serving after that
	// (DefaultDrain when zero): every answer then closes its connection, and
	// connections idle a second are closed, so that clients on kept-alive
	// connections move to another replica between requests, not during one; new
	// connections are served while they keep coming (drainAndStop).
	Drain time.Duration
}

// TLSConfig loads the certificate and key: the TLS of every API listener.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// Run serves c until ctx ends, then shuts down: readiness false, the API
// listeners drained (Config.Drain) and stopped (ShutdownGrace for requests in
// flight, gRPC's included), then metrics and pprof.
func Run(ctx context.Context, c Config) error {
	var tlsConfig *tls.Config
	if c.TLSCertFile != "" {
		var err error
		if tlsConfig, err = TLSConfig(c.TLSCertFile, c.TLSKeyFile); err != nil {
			return err
		}
	}
	if c.Drain == 0 {
		c.Drain = DefaultDrain
	}
	var (
		errs    = make(chan error, len(c.HTTP)+3)
		running int
		apis    []*drainingServer
		others  []*http.Server
	)
	serveHTTP := func(srv *http.Server, l net.Listener, withTLS bool) {
		running++
		go func() {
			if withTLS {
				errs <- srv.ServeTLS(l, "", "")
				return
			}
			errs <- srv.Serve(l)
		}()
	}
	for _, h := range c.HTTP {
		handler := h.Handler
		if c.Floor {
			handler = withFloor(handler)
		}
		d := newDrainingServer(handler, tlsConfig)
		apis = append(apis, d)
		serveHTTP(d.srv, h.Listener, tlsConfig != nil)
	}
	if c.GRPC != nil {
		running++
		go func() { errs <- c.GRPC.Server.Serve(c.GRPC.Listener) }()
	}
	if c.Metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(c.Registry, promhttp.HandlerOpts{}))
		srv := newServer(mux, WriteTimeout)
		others = append(others, srv)
		serveHTTP(srv, c.Metrics, false)
	}
	if c.Pprof != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
		srv := newServer(mux, PprofWriteTimeout)
		others = append(others, srv)
		serveHTTP(srv, c.Pprof, false)
	}

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		if c.Readiness != nil {
			c.Readiness.stopping.Store(true)
		}
		var wg sync.WaitGroup
		if c.GRPC != nil {
			wg.Go(func() { stopGracefully(c.GRPC.Server) })
		}
		for _, d := range apis {
			wg.Go(func() { d.drainAndStop(c.Drain) })
		}
		wg.Wait()
		for _, srv := range others {
			shutdown(srv)
		}
	}()

	var all []error
	for range running {
		if err := <-errs; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			all = append(all, err)
		}
	}
	if ctx.Err() != nil {
		<-stopped
	}
	if len(all) > 0 {
		return fmt.Errorf("serving: %w", errors.Join(all...))
	}
	return nil
}

// newServer is every listener's server, with the limits above.
func newServer(handler http.Handler, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// stopGracefully lets in-flight RPCs finish for up to ShutdownGrace (clients get
// GOAWAY at once, and open their next connection elsewhere).
func stopGracefully(g *grpc.Server) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(ShutdownGrace):
		g.Stop()
	}
}

// drainingServer is an API listener's server that knows its connections, so
// that it can drain them: http.Server.Shutdown alone closes every idle
// kept-alive connection at once, and a client that sends a POST on one as it
// closes gets EOF, which HTTP clients do not retry.
type drainingServer struct {
	srv      *http.Server
	draining atomic.Bool
	// lastNew is when the newest connection arrived, as time since started
	// (monotonic: a step of the wall clock moves neither): while they keep
	// arriving, some proxy still sends clients here.
	started time.Time
	lastNew atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]connState
}

type connState struct {
	idle  bool
	since time.Time
}

func newDrainingServer(h http.Handler, tlsConfig *tls.Config) *drainingServer {
	d := &drainingServer{conns: map[net.Conn]connState{}, started: time.Now()}
	d.lastNew.Store(int64(-drainIdle)) // none yet
	d.srv = newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.draining.Load() {
			w.Header().Set("Connection", "close") // this answer ends the connection
		}
		h.ServeHTTP(w, r)
	}), WriteTimeout)
	d.srv.TLSConfig = tlsConfig
	d.srv.ConnState = func(c net.Conn, s http.ConnState) {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch s {
		case http.StateNew:
			d.lastNew.Store(int64(time.Since(d.started)))
			d.conns[c] = connState{}
		case http.StateActive:
			d.conns[c] = connState{}
		case http.StateIdle:
			d.conns[c] = connState{idle: true, since: time.Now()}
		case http.StateHijacked, http.StateClosed:
			delete(d.conns, c)
		}
	}
	return d
}

// drainAndStop keeps serving for at most drain: every answer closes its
// connection, a connection idle drainIdle is closed, and it stops early once
// none is left and none has arrived for drainIdle; then it shuts the server down.
//
// Readiness turned false when draining began, but whoever routes clients here
// (kube-proxy, a load balancer) hears of it, or of the pod's deletion, only some
// time later: until then new connections keep coming, and a server that stopped
// listening once its last connection closed would refuse them. They are served
// instead, for as long as they keep coming (within drain).
func (d *drainingServer) drainAndStop(drain time.Duration) {
	d.draining.Store(true)
	deadline := time.Now().Add(drain)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if d.closeIdle() == 0 && time.Since(d.started)-time.Duration(d.lastNew.Load()) >= drainIdle {
			break
		}
		<-tick.C
	}
	shutdown(d.srv)
}

// closeIdle closes the connections idle for drainIdle and returns how many remain.
func (d *drainingServer) closeIdle() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c, s := range d.conns {
		if s.idle && time.Since(s.since) >= drainIdle {
			_ = c.Close()
			delete(d.conns, c)
		}
	}
	return len(d.conns)
}
