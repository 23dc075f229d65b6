package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The cluster port (--raft-addr) carries two kinds of connection, told
// apart by their first byte (sent inside TLS when cluster TLS is on):
// Raft's own RPCs, and node-to-node Connect RPC (h2c). See DESIGN.md.
const (
	muxRaft byte = 0x01
	muxRPC  byte = 0x02
)

// muxHandshakeTimeout bounds the TLS handshake and the first byte of an
// accepted cluster connection, so idle or hostile dialers cannot pile up.
const muxHandshakeTimeout = 10 * time.Second

// clusterMux owns the cluster listener, runs the TLS handshake when
// configured, reads the first byte and hands each connection to Raft or to
// the node RPC server. Safe for concurrent use; close is idempotent.
type clusterMux struct {
	ln        net.Listener
	advertise net.Addr
	serverTLS *tls.Config // nil: plaintext
	clientTLS *tls.Config
	log       *slog.Logger

	raftCh chan net.Conn
	rpcCh  chan net.Conn
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newClusterMux(bind string, advertise string, serverTLS, clientTLS *tls.Config, log *slog.Logger) (*clusterMux, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("cluster listen: %w", err)
	}
	var adv net.Addr = ln.Addr()
	if _, port, _ := net.SplitHostPort(advertise); port == "0" {
		advertise = "" // advertise the port the listener bound
	}
	if advertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", advertise); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("advertise raft addr: %w", err)
		}
	}
	if tcp, ok := adv.(*net.TCPAddr); !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
		_ = ln.Close()
		return nil, fmt.Errorf("raft address %s is not advertisable: set an advertise address", adv)
	}
	m := &clusterMux{
		ln: ln, advertise: adv, serverTLS: serverTLS, clientTLS: clientTLS, log: log,
		raftCh: make(chan net.Conn), rpcCh: make(chan net.Conn), done: make(chan struct{}),
	}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

func (m *clusterMux) acceptLoop() {
	defer m.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			m.log.Warn("cluster accept", "err", err)
			select {
			case <-m.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.handle(c)
		}()
	}
}

func (m *clusterMux) handle(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(muxHandshakeTimeout))
	conn := c
	if m.serverTLS != nil {
		tc := tls.Server(c, m.serverTLS)
		if err := tc.Handshake(); err != nil {
			m.log.Warn("cluster TLS handshake refused", "remote", c.RemoteAddr().String(), "err", err)
			_ = c.Close()
			return
		}
		conn = tc
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		_ = conn.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	var ch chan net.Conn
	switch b[0] {
	case muxRaft:
		ch = m.raftCh
	case muxRPC:
		ch = m.rpcCh
	case 0x16: // a TLS ClientHello on a plaintext cluster port
		m.log.Warn("a TLS client dialled this plaintext cluster port: configure cluster TLS on every node or on none", "remote", c.RemoteAddr().String())
		_ = conn.Close()
		return
	default:
		m.log.Warn("cluster connection with unknown first byte", "remote", c.RemoteAddr().String(), "byte", b[0])
		_ = conn.Close()
		return
	}
	select {
	case ch <- plainConn{conn}:
	case <-m.done:
		_ = conn.Close()
	}
}

// dial opens a cluster connection of the given kind to addr.
func (m *clusterMux) dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	d := net.Dialer{}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := c
	if m.clientTLS != nil {
		tc := tls.Client(c, m.clientTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("cluster TLS to %s: %w", addr, err)
		}
		conn = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write([]byte{kind}); err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return plainConn{conn}, nil
}

func (m *clusterMux) close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		err = m.ln.Close()
		m.wg.Wait()
	})
	return err
}

// plainConn hides a *tls.Conn's type so net/http serves it as h2c (prior
// knowledge) instead of redoing TLS and ALPN: the TLS is ours, below HTTP.
type plainConn struct{ net.Conn }

// raftLayer is the raft.StreamLayer over the cluster mux.
type raftLayer struct{ m *clusterMux }

var _ raft.StreamLayer = raftLayer{}

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

func (l raftLayer) Close() error   { return l.m.close() }
func (l raftLayer) Addr() net.Addr { return l.m.advertise }

func (l raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.m.dial(ctx, string(address), muxRaft)
}

// rpcListener feeds node RPC connections to the cluster http.Server.
type rpcListener struct{ m *clusterMux }

func (l rpcListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.rpcCh:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

func (l rpcListener) Close() error   { return nil } // the mux owns the socket
func (l rpcListener) Addr() net.Addr { return l.m.advertise }
