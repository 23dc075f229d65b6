package node

import (
	"context"

	"connectrpc.com/connect"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// Test helpers shared with package node_test.
type TestCA = testCA

var NewTestCA = newTestCA

// FirstLogIndex is the first index still in the Raft log store.
func (n *Node) FirstLogIndex() uint64 {
	i, _ := n.store.FirstIndex()
	return i
}

// WaitAppliedOn calls NodeService.WaitApplied on the node whose cluster port
// is addr, with this node's node token or (token false) none.
func (n *Node) WaitAppliedOn(ctx context.Context, addr string, msg *writv1.WaitAppliedRequest, token bool) (*writv1.WaitAppliedResponse, error) {
	req := connect.NewRequest(msg)
	if token {
		req = nodeRequest(n, msg)
	}
	resp, err := n.peers.nodeClient(addr).WaitApplied(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// LogFloor is the index this node's stale reads wait for (announce.go).
func (n *Node) LogFloor() uint64 { return n.logs.floor.Load() }

// SetLogFloor sets it.
func (n *Node) SetLogFloor(v uint64) { n.logs.floor.Store(v) }

// LastLogIndex is the last index in this node's Raft log store.
func (n *Node) LastLogIndex() uint64 {
	i, _ := n.logs.LastIndex()
	return i
}
