package flowcontrol

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// LimitBySource bounds the connections a listener serves at once from one source
// address (an IPv6 address by its /64). A connection beyond the bound is
// accepted but not served — no goroutine reads it, so its requests wait in the
// kernel's buffers and cost no CPU — until one of its source's connections closes,
// or, after maxWait, it is closed. At most maxPending such connections are held
// over all sources; beyond, a new one is closed at once.
//
// A flood over many keep-alive connections is the one load a limit on requests
// cannot reach: each connection's goroutine reads and parses before any limit
// sees the request, and the Go scheduler runs them first come, first served, so a
// thousand flooding connections delay every other caller's request by as many
// parses. Bounding the connections of one source bounds that delay. Connections
// from a trusted address (a proxy that carries many clients) are not bounded.
func LimitBySource(l net.Listener, perSource, maxPending int, maxWait time.Duration, trusted func(netip.Addr) bool) net.Listener {
	sl := &sourceListener{Listener: l, perSource: perSource, maxPending: maxPending, maxWait: maxWait, trusted: trusted,
		open: map[string]int{}, pending: map[string][]*pendingConn{}, ready: make(chan net.Conn, 64), done: make(chan struct{}),
		closing: make(chan struct{})}
	go sl.acceptLoop()
	return sl
}

type sourceListener struct {
	net.Listener
	perSource, maxPending int
	maxWait               time.Duration
	trusted               func(netip.Addr) bool

	mu       sync.Mutex
	open     map[string]int
	pending  map[string][]*pendingConn
	nPending int
	ready    chan net.Conn // connections to serve, in the order they may be
	err      error         // the inner listener's, once it fails
	done     chan struct{} // closed with err

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
}

type pendingConn struct {
	net.Conn
	timer *time.Timer
}

func (l *sourceListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		select {
		case c := <-l.ready:
			return c, nil
		default:
		}
		return nil, l.err
	}
}

func (l *sourceListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var temporary interface{ Temporary() bool }
			if errors.As(err, &temporary) && temporary.Temporary() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			close(l.done)
			return
		}
		l.admit(c)
	}
}

// admit serves c now, holds it, or closes it.
func (l *sourceListener) admit(c net.Conn) {
	src, trusted := l.source(c)
	if trusted {
		l.push(c)
		return
	}
	l.mu.Lock()
	select {
	case <-l.closing: // Close has run, or runs now: hold nothing it would not close
		l.mu.Unlock()
		_ = c.Close()
		return
	default:
	}
	if l.open[src] < l.perSource {
		l.open[src]++
		l.mu.Unlock()
		l.push(&sourceConn{Conn: c, l: l, src: src})
		return
	}
	if l.nPending >= l.maxPending {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	p := &pendingConn{Conn: c}
	p.timer = time.AfterFunc(l.maxWait, func() { l.expire(src, p) })
	l.pending[src] = append(l.pending[src], p)
	l.nPending++
	l.mu.Unlock()
}

// expire closes a connection that waited too long.
func (l *sourceListener) expire(src string, p *pendingConn) {
	l.mu.Lock()
	queue := l.pending[src]
	for i, q := range queue {
		if q == p {
			l.pending[src] = append(queue[:i:i], queue[i+1:]...)
			if len(l.pending[src]) == 0 {
				delete(l.pending, src)
			}
			l.nPending--
			l.mu.Unlock()
			_ = p.Close()
			return
		}
	}
	l.mu.Unlock() // already served
}

// closed frees a place of src: its oldest held connection, if any, takes it.
func (l *sourceListener) closed(src string) {
	l.mu.Lock()
	queue := l.pending[src]
	if len(queue) == 0 {
		if l.open[src]--; l.open[src] <= 0 {
			delete(l.open, src)
		}
		l.mu.Unlock()
		return
	}
	next := queue[0]
	next.timer.Stop()
	if l.pending[src] = queue[1:]; len(l.pending[src]) == 0 {
		delete(l.pending, src)
	}
	l.nPending--
	l.mu.Unlock()
	go l.push(&sourceConn{Conn: next.Conn, l: l, src: src})
}

// push hands c to Accept, or closes it once the listener is closed: a connection
// left waiting in ready would get no answer and no close until the process
// exits, and a push blocked on a full ready would never return.
func (l *sourceListener) push(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.closing:
		_ = c.Close()
		return
	}
	select {
	case <-l.closing:
		l.closeReady() // Close may have emptied ready before c went in
	default:
	}
}

// closeReady closes the connections waiting in ready.
func (l *sourceListener) closeReady() {
	for {
		select {
		case c := <-l.ready:
			_ = c.Close()
		default:
			return
		}
	}
}

func (l *sourceListener) source(c net.Conn) (string, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String(), false
	}
	addr := ap.Addr().Unmap()
	if l.trusted != nil && l.trusted(addr) {
		return "", true
	}
	if addr.Is6() {
		prefix, _ := addr.Prefix(64)
		return prefix.String(), false
	}
	return addr.String(), false
}

// sourceConn gives its source's place back when it closes.
type sourceConn struct {
	net.Conn
	l    *sourceListener
	src  string
	once sync.Once
}

func (c *sourceConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.closed(c.src) })
	return err
}

// Close closes the listener and the connections it holds, served by no one yet.
func (l *sourceListener) Close() error {
	l.closeOnce.Do(func() { close(l.closing) })
	err := l.Listener.Close()
	l.mu.Lock()
	for src, queue := range l.pending {
		for _, p := range queue {
			p.timer.Stop()
			_ = p.Close()
		}
		delete(l.pending, src)
	}
	l.nPending = 0
	l.mu.Unlock()
	l.closeReady() // not under mu: a sourceConn's Close takes it
	return err
}
