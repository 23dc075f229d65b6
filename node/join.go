package node

import (
	"context"
	"time"

	"connectrpc.com/connect"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// joinLoop joins through the configured addresses until one accepts or the
// node closes. Each address may be a gossip address (memberlist join; the
// leader's reconcile then adds this node as a voter; tried first) or an
// API address (ClusterService.Join with the admin token, following leader
// hints; gossip then follows through the node table, see rejoinLoop). A node that is
// already in the configuration is simply re-registered by the leader.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	backoff := 100 * time.Millisecond
	for attempt := 0; n.ctx.Err() == nil; attempt++ {
		if n.gossip != nil {
			// Gossip first: in the recommended setup every --join is a gossip
			// address, and an API join sent to a gossip port only makes noise.
			if err := n.gossip.joinWithin(n.cfg.Join, 3*time.Second); err == nil {
				n.log.Info("joined gossip", "via", n.cfg.Join)
				return
			} else {
				n.log.Debug("gossip join failed", "err", err)
			}
		}
		for _, seed := range n.cfg.Join {
			if n.cfg.AdminToken == "" {
				break
			}
			addr := seed
			for hop := 0; hop < 3 && addr != ""; hop++ {
				err := n.joinVia(addr)
				if err == nil {
					n.log.Info("joined cluster", "via", addr)
					return
				}
				next := leaderHint(err)
				n.log.Debug("join attempt failed", "via", addr, "err", err, "leader_hint", next)
				if next == addr {
					break
				}
				addr = next
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
		if attempt%10 == 9 {
			n.log.Warn("still trying to join", "seeds", n.cfg.Join)
		}
	}
}

func (n *Node) joinVia(addr string) error {
	ctx, cancel := context.WithTimeout(n.ctx, 15*time.Second)
	defer cancel()
	req := connect.NewRequest(&writv1.JoinRequest{
		NodeId: n.cfg.NodeID, RaftAddr: n.RaftAddr(), ApiAddr: n.cfg.AdvertiseAPI,
	})
	req.Header().Set("Authorization", "Bearer "+n.cfg.AdminToken)
	_, err := n.peers.clusterClient(addr).Join(ctx, req)
	return err
}
