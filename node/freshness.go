package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// Freshness: whether this node may answer stale reads.
//
// Raft's LastContact is not enough. Heartbeats are handled on a fast path
// that refreshes it without touching the log, and after a partition heals
// the leader's heartbeat and replication loops back off independently, so a
// follower can hear heartbeats again for seconds before it receives the
// entries it missed. Judged by LastContact alone it answered from its
// pre-partition state and accepted a credential revoked while it was cut off
// (TestMinorityPartition caught exactly that).
//
// So freshness is a read lease earned by catching up. Every
// max-staleness/8 each node runs a sync round: it notes the time t0, gets a
// read index R from the leader (the leader's commit index, confirmed by a
// heartbeat round to a quorum, see leaderReadIndex) and waits until it has
// applied R. The node is then fresh until t0 + freshLease, freshLease being
// 3/4 of max staleness. Why that makes Revoke's guarantee hold: Revoke gives
// up on a node that has not confirmed within max staleness of the commit.
// A node fresh at any time after that synced from a round that began after
// the commit, so the R it applied covers the revocation. No heuristic about
// gaps, leader changes or restarts is needed: a node that stops completing
// rounds (cut off, stalled disk, restarted, mid-election) simply stops being
// fresh within freshLease, and a healed node is fresh again only once it has
// applied everything committed before it came back.
//
// The cost is one small node RPC per follower per round and one heartbeat
// round on the leader per request (no log entries): at the 2 s default,
// four rounds a second per node.
type freshness struct {
	epoch    time.Time    // monotonic base for syncedAt
	syncedAt atomic.Int64 // start of the last completed round, ns since epoch; 0 = none yet
	// barrierTerm is the leader term in which this node's barrier committed:
	// from then on its commit index covers every earlier term.
	barrierTerm atomic.Uint64

	mu      sync.Mutex
	changed chan struct{} // closed at the next leader change, then replaced
	lastErr error         // why the last round failed; nil after a success
}

func (f *freshness) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastErr = err
}

// err is why the last sync round failed, for diagnostics (WaitReady).
func (f *freshness) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

func newFreshness() *freshness {
	return &freshness{epoch: time.Now(), changed: make(chan struct{})}
}

func (f *freshness) now() int64 { return int64(time.Since(f.epoch)) + 1 }

// freshFor reports whether a round completed within lease.
func (f *freshness) freshFor(lease time.Duration) bool {
	s := f.syncedAt.Load()
	return s != 0 && f.now()-s <= int64(lease)
}

// advance records a completed round that started at t0.
func (f *freshness) advance(t0 int64) {
	for {
		old := f.syncedAt.Load()
		if old >= t0 || f.syncedAt.CompareAndSwap(old, t0) {
			return
		}
	}
}

// leaderChanged returns a channel closed at the next leader change, so
// writes waiting out an election retry as soon as a leader is known
// instead of at their next backoff step.
func (f *freshness) leaderChanged() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *freshness) notifyLeader() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.changed)
	f.changed = make(chan struct{})
}

// freshLease is how long a completed sync round keeps the node fresh. It
// must stay below MaxStaleness, the time Revoke waits for a silent node.
func (n *Node) freshLease() time.Duration { return n.cfg.MaxStaleness * 3 / 4 }

// freshnessLoop runs sync rounds every max staleness/8, and at once on a
// leader change, until the node closes.
func (n *Node) freshnessLoop() {
	defer n.wg.Done()
	obsCh := make(chan raft.Observation, 16)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	tick := time.NewTicker(max(n.cfg.MaxStaleness/8, time.Millisecond))
	defer tick.Stop()
	var dropped uint64
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-obsCh:
			n.caught.notifyLeader()
		case <-tick.C:
		}
		if d := obs.GetNumDropped(); d != dropped {
			dropped = d
			n.caught.notifyLeader()
		}
		n.syncRound()
	}
}

// syncRound applies a read index obtained after it started and, on
// success, extends the read lease from its start. Failures leave the lease
// to run out.
func (n *Node) syncRound() {
	t0 := n.caught.now()
	ctx, cancel := context.WithTimeout(n.ctx, n.freshLease())
	defer cancel()
	var idx uint64
	var err error
	switch n.raft.State() {
	case raft.Leader:
		idx, err = n.leaderReadIndex()
	case raft.Follower:
		idx, err = n.askReadIndex(ctx)
	default:
		n.caught.setErr(fmt.Errorf("raft state %s", n.raft.State()))
		return
	}
	if err == nil {
		err = n.fsm.WaitApplied(ctx, idx)
	}
	n.caught.setErr(err)
	if err != nil {
		n.log.Debug("sync round", "err", err)
		return
	}
	n.caught.advance(t0)
}

// askReadIndex asks the leader, once, for a read index.
func (n *Node) askReadIndex(ctx context.Context) (uint64, error) {
	addr, err := n.leaderCluster()
	if err != nil {
		return 0, err
	}
	if addr == "" { // became leader meanwhile
		return n.leaderReadIndex()
	}
	resp, err := n.peers.nodeClient(addr).WaitApplied(ctx, nodeRequest(n, &writv1.WaitAppliedRequest{ReadIndex: true, NodeId: n.cfg.NodeID, FsmVersion: n.fsmVersion()}))
	if err != nil {
		return 0, err
	}
	return resp.Msg.GetAppliedIndex(), nil
}
