package flowcontrol

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func dialFrom(t *testing.T, addr net.Addr, source string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// accepted returns the next connection the listener serves, or nil within wait.
func accepted(l net.Listener, wait time.Duration) net.Conn {
	got := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			got <- c
		}
	}()
	select {
	case c := <-got:
		return c
	case <-time.After(wait):
		return nil
	}
}

func TestLimitBySource(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trusted := netip.MustParseAddr("127.0.0.9")
	l := LimitBySource(inner, 2, 8, 200*time.Millisecond, func(a netip.Addr) bool { return a == trusted })
	defer l.Close()

	a1, a2 := dialFrom(t, inner.Addr(), "127.0.0.2"), dialFrom(t, inner.Addr(), "127.0.0.2")
	_, _ = a1, a2
	first, second := accepted(l, time.Second), accepted(l, time.Second)
	if first == nil || second == nil {
		t.Fatal("the first two connections of a source are served")
	}
	dialFrom(t, inner.Addr(), "127.0.0.2") // a third: held
	dialFrom(t, inner.Addr(), "127.0.0.3") // another source: served
	if c := accepted(l, time.Second); c == nil || c.RemoteAddr().(*net.TCPAddr).IP.String() != "127.0.0.3" {
		t.Fatalf("another source is served while the first's third waits: %v", c)
	}
	for range 3 { // a trusted proxy is not bounded
		dialFrom(t, inner.Addr(), "127.0.0.9")
		if c := accepted(l, time.Second); c == nil {
			t.Fatal("a trusted source's connection is served")
		}
	}
	first.Close()
	if c := accepted(l, time.Second); c == nil || c.RemoteAddr().(*net.TCPAddr).IP.String() != "127.0.0.2" {
		t.Fatalf("a held connection is served once its source's place frees up: %v", c)
	}
	dialFrom(t, inner.Addr(), "127.0.0.2") // held, and never served: expires
	held := dialFrom(t, inner.Addr(), "127.0.0.2")
	if c := accepted(l, 500*time.Millisecond); c != nil {
		t.Fatalf("served beyond the bound: %v", c.RemoteAddr())
	}
	_ = held.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection held past maxWait is closed")
	}
}

// Closing the listener closes the connections it accepted and no one took yet
// (an http.Server stops calling Accept when it shuts down): their clients hear
// so at once, instead of waiting unanswered until the process exits.
func TestClosingTheListenerClosesTheConnectionsNobodyTook(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitBySource(inner, 4, 8, time.Minute, nil)
	var clients []net.Conn
	for range 3 {
		clients = append(clients, dialFrom(t, inner.Addr(), "127.0.0.2"))
	}
	clients = append(clients, dialFrom(t, inner.Addr(), "127.0.0.3"))
	sl := l.(*sourceListener)
	deadline := time.Now().Add(5 * time.Second)
	for len(sl.ready) < 4 && time.Now().Before(deadline) { // accepted from the kernel, waiting for Accept
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(sl.ready); n != 4 {
		t.Fatalf("%d connections waiting for Accept, want 4", n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("connection %d: still open after the listener closed", i)
		}
	}
	if len(sl.open) != 0 {
		t.Errorf("places still counted for closed connections: %v", sl.open)
	}
}
