package node

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/writ-dev/writ/rpc"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// peerClients holds Connect clients for other nodes, keyed by address:
// NodeService and MemberService on their cluster port (Raft address; mutual
// TLS when configured), ClusterService on their public API (joins through
// --join API addresses). One h2c transport multiplexes every call to a
// peer over one connection.
type peerClients struct {
	http    *http.Client // public API
	cluster *http.Client // cluster port, through the mux dialer
	mu      sync.Mutex
	node    map[string]writv1connect.NodeServiceClient
	member  map[string]writv1connect.MemberServiceClient
	clus    map[string]writv1connect.ClusterServiceClient
}

// newPeerClients builds the clients. Public API calls go over h2c, or
// HTTP/2 over TLS (verified with peerTLS, default the system roots) to
// peers that advertise https; dialCluster opens a node RPC connection to a
// peer's cluster port (under cluster mutual TLS when configured), over
// which the cluster client speaks h2c: the TLS, if any, is the mux's.
func newPeerClients(peerTLS *tls.Config, dialCluster func(ctx context.Context, addr string) (net.Conn, error)) *peerClients {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	protocols.SetHTTP2(true)
	if peerTLS == nil {
		peerTLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	peerTLS = peerTLS.Clone() // the transport adds ALPN protocols to it: never share the caller's
	tr := &http.Transport{
		Protocols:           &protocols,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     time.Minute,
		TLSClientConfig:     peerTLS,
	}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	ctr := &http.Transport{
		Protocols: &h2c,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return dialCluster(ctx, addr)
		},
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     time.Minute,
	}
	return &peerClients{
		http:    &http.Client{Transport: tr},
		cluster: &http.Client{Transport: ctr},
		node:    map[string]writv1connect.NodeServiceClient{},
		member:  map[string]writv1connect.MemberServiceClient{},
		clus:    map[string]writv1connect.ClusterServiceClient{},
	}
}

func baseURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return addr
	}
	return "http://" + addr
}

// nodeClient calls NodeService at a peer's cluster (Raft) address.
func (p *peerClients) nodeClient(raftAddr string) writv1connect.NodeServiceClient {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.node[raftAddr]
	if !ok {
		c = writv1connect.NewNodeServiceClient(p.cluster, "http://"+raftAddr, connect.WithGRPC())
		p.node[raftAddr] = c
	}
	return c
}

// memberClient calls MemberService at a peer's cluster (Raft) address.
func (p *peerClients) memberClient(raftAddr string) writv1connect.MemberServiceClient {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.member[raftAddr]
	if !ok {
		c = writv1connect.NewMemberServiceClient(p.cluster, "http://"+raftAddr, connect.WithGRPC())
		p.member[raftAddr] = c
	}
	return c
}

func (p *peerClients) clusterClient(addr string) writv1connect.ClusterServiceClient {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.clus[addr]
	if !ok {
		c = writv1connect.NewClusterServiceClient(p.http, baseURL(addr))
		p.clus[addr] = c
	}
	return c
}

func (p *peerClients) close() {
	p.http.CloseIdleConnections()
	p.cluster.CloseIdleConnections()
}

// leaderHint extracts the leader address from a not_leader error, if any.
func leaderHint(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return ""
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if info, ok := v.(*errdetails.ErrorInfo); ok && info.GetDomain() == rpc.ErrorDomain {
			return info.GetMetadata()["leader_addr"]
		}
	}
	return ""
}

// retryableRemote reports whether a failed call to a peer is worth retrying
// (the peer is down, not the leader, or mid-election).
func retryableRemote(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeUnknown, connect.CodeDeadlineExceeded, connect.CodeAborted:
		return true
	case connect.CodeUnauthenticated:
		// A node that has not yet applied the bootstrap entry cannot check the node token.
		return true
	}
	return false
}

// peerReset reports a call to a peer that connect-go reports as canceled
// although our own context is live: the connection was reset under it (a
// peer restarting, a network fault). That is worth retrying, not a
// cancellation to hand back to the client.
func peerReset(ctx context.Context, err error) bool {
	return ctx.Err() == nil && connect.CodeOf(err) == connect.CodeCanceled
}
