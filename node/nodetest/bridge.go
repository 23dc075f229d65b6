package nodetest

import (
	"net"
	"sync"
	"time"
)

// Link is a TCP bridge for one directed link: the connections one member
// opens to another's cluster port, which carry Raft and node RPC alike.
// Each member dials its peers only through its own links
// (node.Config.PeerAddr), so cutting the links between two groups
// partitions them exactly, whatever runs over the connection (plaintext or
// cluster mutual TLS: the bridge only copies bytes).
//
// A cut link closes every connection it carries and closes new ones as soon
// as they are accepted, so both ends see an error at once instead of
// half-written frames; after Heal new connections go through again and the
// node's transport redials. A delayed link holds every chunk for the delay in
// each direction before passing it on, preserving order.
//
// Link methods are safe for concurrent use.
type Link struct {
	From, To string // member ids

	ln     net.Listener
	target func() string

	mu    sync.Mutex
	cut   bool
	delay time.Duration
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newLink(from, to string, target func() string) (*Link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &Link{From: from, To: to, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr is the address the source member dials.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Cut closes every connection on the link and refuses new ones until Heal.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for c := range l.conns {
		_ = c.Close()
	}
}

// Heal lets new connections through again and removes any delay.
func (l *Link) Heal() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = false
	l.delay = 0
}

// SetDelay holds every chunk for d in each direction (0 removes the delay).
// It applies to bytes read after the call.
func (l *Link) SetDelay(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delay = d
}

// IsCut reports whether the link is cut.
func (l *Link) IsCut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cut
}

func (l *Link) close() {
	_ = l.ln.Close()
	l.Cut()
	l.wg.Wait()
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		in, err := l.ln.Accept()
		if err != nil {
			return
		}
		if !l.track(in) {
			_ = in.Close()
			continue
		}
		l.wg.Add(1)
		go l.serve(in)
	}
}

// track registers c unless the link is cut.
func (l *Link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Link) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

func (l *Link) currentDelay() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.delay
}

func (l *Link) serve(in net.Conn) {
	defer l.wg.Done()
	defer l.untrack(in)
	defer func() { _ = in.Close() }()
	out, err := net.DialTimeout("tcp", l.target(), 2*time.Second)
	if err != nil {
		return // the target is down: the source sees its connection close
	}
	if !l.track(out) {
		_ = out.Close()
		return
	}
	defer l.untrack(out)
	defer func() { _ = out.Close() }()
	done := make(chan struct{}, 2)
	go func() { l.pump(out, in); done <- struct{}{} }()
	go func() { l.pump(in, out); done <- struct{}{} }()
	<-done
	// One direction ended: close both so the other pump ends too.
	_ = in.Close()
	_ = out.Close()
	<-done
}

type chunk struct {
	b  []byte
	at time.Time
}

// pump copies src to dst, holding each chunk for the link's delay.
func (l *Link) pump(dst, src net.Conn) {
	q := make(chan chunk, 256)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for c := range q {
			if wait := time.Until(c.at); wait > 0 {
				t := time.NewTimer(wait)
				<-t.C
			}
			if _, err := dst.Write(c.b); err != nil {
				_ = src.Close()
				// Drain so the reader never blocks on a full queue.
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			b := make([]byte, n)
			copy(b, buf[:n])
			q <- chunk{b: b, at: time.Now().Add(l.currentDelay())}
		}
		if err != nil {
			break // EOF or a closed connection: serve closes both ends
		}
	}
	close(q)
	<-writerDone
}
