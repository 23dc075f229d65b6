package node

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/writ-dev/writ/fsm"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// AwaitEverywhere returns once the committed revocation p is in force on
// every server in the Raft configuration, or a server has failed to confirm
// within max staleness (such a node is out of contact and fails closed on
// its own, see freshness.go). See docs/consistency.md and DESIGN.md
// ("Revocation in one round trip: the push").
//
// In force means applied, or installed in the node's overlay of committed
// revocations (fsm/overlay.go): this node installs p locally and sends it
// to every peer with NodeService.WaitApplied, and a peer that has not
// applied p.Index yet installs it and answers at once. So Revoke costs one
// round trip after the commit instead of waiting for the followers to learn
// the commit (the leader's next append, two more fsyncs) and apply. A peer
// whose overlay refuses it (full) or that does not know the field waits
// for the apply, as it did before; p.Kind "" pushes nothing. The local
// step and the peers run in parallel. A voter in p.Holders (the leader saw
// it acknowledge the entry's append, announce.go) already enforces p and is
// sent nothing.
func (n *Node) AwaitEverywhere(ctx context.Context, p fsm.Pending) error {
	index := p.Index
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	local := make(chan error, 1)
	go func() {
		if p.Kind != "" {
			_, err := n.PushRevocation(ctx, p)
			local <- err
			return
		}
		local <- n.fsm.WaitApplied(ctx, index)
	}()
	var wg sync.WaitGroup
	for _, srv := range cf.Configuration().Servers {
		id := string(srv.ID)
		if id == n.cfg.NodeID {
			continue
		}
		if slices.Contains(p.Holders, id) {
			// It acknowledged the entry's append, so it enforces the
			// revocation announced with it (announce.go).
			n.confirmed("stored")
			continue
		}
		addr := n.peerClusterAddr(id, string(srv.Address))
		if n.answered.covers(addr, index) {
			// The leader that applied the write answered it: nothing to send.
			n.confirmed("answered")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.awaitPeer(ctx, id, addr, p)
		}()
	}
	err := <-local
	wg.Wait()
	if err != nil {
		return err
	}
	return ctx.Err()
}

// awaitPeer pushes p to one peer (or long-polls it for p.Index) until it
// confirms or max staleness passes; errors (peer restarting, link down) are
// retried every 20ms.
func (n *Node) awaitPeer(ctx context.Context, id, addr string, p fsm.Pending) {
	wctx, cancel := context.WithTimeout(ctx, n.cfg.MaxStaleness)
	defer cancel()
	msg := &writv1.WaitAppliedRequest{Index: p.Index}
	if p.Kind != "" {
		msg.Revocation = &writv1.PendingRevocation{Kind: p.Kind, Target: p.ID}
	}
	index := p.Index
	for wctx.Err() == nil {
		_, err := n.peers.nodeClient(addr).WaitApplied(wctx, nodeRequest(n, msg))
		if err == nil {
			if msg.Revocation != nil {
				n.confirmed("pushed")
			} else {
				n.confirmed("waited")
			}
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
		n.confirmed("unconfirmed")
		n.log.Warn("peer did not confirm a revocation within max staleness; it fails closed", "peer", id, "index", index)
	}
}

func (n *Node) confirmed(how string) {
	if m := n.obs.metrics; m != nil {
		m.RevocationConfirmations.WithLabelValues(how).Inc()
	}
}

// answeredWrites remembers, per leader cluster address, the highest index
// a leader proved it had applied by answering a forwarded urgent write (a
// revocation; Propose notes nothing for issuance's forwards): its
// results come out of its FSM's Apply, so from then on every read there
// sees the entry. AwaitEverywhere sends nothing to such a peer for that
// index or below. If the peer restarts meanwhile, it serves no read until
// it has applied a read index taken after the restart (freshness.go),
// which covers every entry committed before, the same argument as for the
// overlay. There is one address per leader ever seen, a handful; the map
// is cleared if it ever holds more than maxAnswered.
type answeredWrites struct {
	mu sync.Mutex
	m  map[string]uint64
}

const maxAnswered = 64

func (a *answeredWrites) note(addr string, index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil || len(a.m) >= maxAnswered {
		a.m = map[string]uint64{}
	}
	a.m[addr] = max(a.m[addr], index)
}

func (a *answeredWrites) covers(addr string, index uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return index != 0 && a.m[addr] >= index
}
