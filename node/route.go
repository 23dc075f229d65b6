package node

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// peerRaftAddrs adapts Config.PeerAddr to raft's ServerAddressProvider, which
// the transport consults on every dial; an empty answer falls back to the
// address in the Raft configuration.
type peerRaftAddrs func(nodeID, kind string) string

func (f peerRaftAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if addr := f(string(id), PeerCluster); addr != "" {
		return raft.ServerAddress(addr), nil
	}
	return "", fmt.Errorf("no route to %s", id)
}

// peerClusterAddr is the address this node dials for peer id's cluster port
// (Raft and node RPC): advertised, the address the peer advertised (its Raft
// address), unless Config.PeerAddr routes the peer elsewhere.
func (n *Node) peerClusterAddr(id, advertised string) string {
	if n.cfg.PeerAddr != nil && id != "" {
		if addr := n.cfg.PeerAddr(id, PeerCluster); addr != "" {
			return addr
		}
	}
	return advertised
}
