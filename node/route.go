package node

import (
	"fmt"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// peerRaftAddrs adapts Config.PeerAddr to raft's ServerAddressProvider, which
// the transport consults on every dial; an empty answer falls back to the
// address in the Raft configuration.
type peerRaftAddrs func(nodeID, kind string) string

func (f peerRaftAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if addr := f(string(id), PeerRaft); addr != "" {
		return raft.ServerAddress(addr), nil
	}
	return "", fmt.Errorf("no route to %s", id)
}

// peerAPIAddr is the address this node dials for peer's API: its advertised
// address unless Config.PeerAddr routes it elsewhere.
func (n *Node) peerAPIAddr(peer *fsmpb.Node) string {
	if n.cfg.PeerAddr != nil {
		if addr := n.cfg.PeerAddr(peer.GetId(), PeerAPI); addr != "" {
			// A route is host:port; keep the scheme the peer advertises
			// (https when its API serves TLS).
			if !strings.Contains(addr, "://") && strings.HasPrefix(peer.GetApiAddr(), "https://") {
				return "https://" + addr
			}
			return addr
		}
	}
	return peer.GetApiAddr()
}
