package node

import (
	"context"
	"sync"
	"time"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// AwaitEverywhere returns once every server in the Raft configuration has
// applied index, or has failed to confirm within max staleness (such a node
// is out of contact and fails closed on its own, see freshness.go). See
// docs/consistency.md.
//
// The local wait and the peers' long polls (NodeService.WaitApplied on
// their cluster port blocks on the peer until its FSM publishes the index)
// run in parallel: the peers
// learn the commit from the same append as this node, so waiting for the
// local apply first would add a round trip for nothing.
func (n *Node) AwaitEverywhere(ctx context.Context, index uint64) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	local := make(chan error, 1)
	go func() { local <- n.fsm.WaitApplied(ctx, index) }()
	var wg sync.WaitGroup
	for _, srv := range cf.Configuration().Servers {
		id := string(srv.ID)
		if id == n.cfg.NodeID {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			n.awaitPeer(ctx, id, addr, index)
		}(n.peerClusterAddr(id, string(srv.Address)))
	}
	err := <-local
	wg.Wait()
	if err != nil {
		return err
	}
	return ctx.Err()
}

// awaitPeer long-polls one peer until it confirms index or max staleness
// passes; errors (peer restarting, link down) are retried every 20ms.
func (n *Node) awaitPeer(ctx context.Context, id, addr string, index uint64) {
	wctx, cancel := context.WithTimeout(ctx, n.cfg.MaxStaleness)
	defer cancel()
	for wctx.Err() == nil {
		_, err := n.peers.nodeClient(addr).WaitApplied(wctx, nodeRequest(n, &writv1.WaitAppliedRequest{Index: index}))
		if err == nil {
			return
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-wctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if ctx.Err() == nil {
		n.log.Warn("peer did not confirm a revocation within max staleness; it fails closed", "peer", id, "index", index)
	}
}
