package node

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/rpc"
)

// reapBatch bounds how many expired leases one log entry removes.
const reapBatch = 10000

// reaperLoop removes expired leases in bulk while this node leads. Expired
// leases are already rejected at read time; reaping only keeps the state
// bounded. It finds them through the FSM's expiry index, so a leader change
// reloads nothing: the new leader just keeps ticking.
func (n *Node) reaperLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.raft.State() != raft.Leader {
			continue
		}
		n.maintainKeys(n.cfg.Clock.Now())
		// Drain in bounded entries until nothing expired is left (or we stop leading).
		for i := 0; i < 100 && n.ctx.Err() == nil; i++ {
			now := n.cfg.Clock.Now()
			next, ok := n.fsm.View().NextExpiry()
			if !ok || !next.Before(now) {
				break
			}
			reaped, err := n.reap(now)
			if err != nil {
				n.log.Warn("reap expired leases", "err", err)
				break
			}
			if reaped < reapBatch {
				break
			}
		}
	}
}

func (n *Node) reap(now time.Time) (uint64, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	id, err := randomHex(randReader, 16)
	if err != nil {
		return 0, err
	}
	results, err := n.Propose(ctx, []*fsmpb.Command{{
		Header:  &fsmpb.Header{RequestId: "reap-" + id},
		Payload: &fsmpb.Command_ReapExpired{ReapExpired: &fsmpb.ReapExpired{BeforeUnixNano: now.UnixNano(), Limit: reapBatch}},
	}}, rpc.ProposeOptions{})
	if err != nil {
		return 0, err
	}
	return results[0].GetCount(), nil
}
