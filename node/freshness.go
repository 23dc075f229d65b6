package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Freshness: whether this node may answer stale reads.
//
// Raft's LastContact is not enough. Heartbeats are handled on a fast path
// that updates it without touching the log, and after a partition heals the
// leader's heartbeat and replication loops back off independently, so a
// follower can hear heartbeats again for seconds before it receives the
// entries it missed. Judged by LastContact alone it would then answer from
// its pre-partition state: a credential revoked while it was cut off would
// be accepted (TestMinorityPartition caught exactly that).
//
// So a node also needs to have caught up since the last time it may have
// fallen behind. Events that may leave it behind mark it unsynced: starting
// (a restart replays only what its own log holds), every leader change or
// raft state change, a contact gap longer than half of max staleness (seen
// by a ticker every min(max staleness/4, 50ms), so any gap longer than max
// staleness is seen even with late ticks), and a read that finds it stale.
// Catching up is a read index: a follower asks the leader for an index
// covering everything committed (NodeService.WaitApplied with read_index,
// the leader confirms leadership and issues a barrier) and waits until it
// has applied it; a leader issues the barrier itself. Until then fresh()
// fails closed with ErrStale. A mark that arrives while a catch-up is in
// flight wins: the catch-up completes only the generation it started with.
type freshness struct {
	gen      atomic.Uint64 // bumped by every mark
	caughtUp atomic.Uint64 // the generation the last completed catch-up covered

	mu      sync.Mutex
	changed chan struct{} // closed at the next leader change, then replaced
}

func newFreshness() *freshness {
	f := &freshness{changed: make(chan struct{})}
	f.gen.Store(1) // a starting node has not caught up
	return f
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

func (f *freshness) mark()        { f.gen.Add(1) }
func (f *freshness) synced() bool { return f.caughtUp.Load() == f.gen.Load() }

// freshnessLoop watches for events that may leave this node behind and
// catches up after them. It runs until the node closes.
func (n *Node) freshnessLoop() {
	defer n.wg.Done()
	obsCh := make(chan raft.Observation, 64)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	tick := time.NewTicker(min(n.cfg.MaxStaleness/4, 50*time.Millisecond))
	defer tick.Stop()
	var dropped uint64
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-obsCh:
			n.caught.mark()
			if _, ok := o.Data.(raft.LeaderObservation); ok {
				n.caught.notifyLeader()
			}
		case <-tick.C:
		}
		if d := obs.GetNumDropped(); d != dropped {
			dropped = d
			n.caught.mark()
		}
		switch n.raft.State() {
		case raft.Leader:
		case raft.Follower:
			if last := n.raft.LastContact(); last.IsZero() || time.Since(last) > n.cfg.MaxStaleness/2 {
				n.caught.mark()
				continue
			}
		default:
			n.caught.mark()
			continue
		}
		if !n.caught.synced() {
			n.catchUp()
		}
	}
}

// catchUp applies everything committed before it started, then records the
// generation it started with as caught up. Failures are retried on the next tick.
func (n *Node) catchUp() {
	gen := n.caught.gen.Load()
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.MaxStaleness)
	defer cancel()
	var idx uint64
	var err error
	if n.raft.State() == raft.Leader {
		idx, err = n.leaderReadIndex()
	} else {
		idx, err = n.readIndex(ctx)
	}
	if err != nil {
		n.log.Debug("catch up", "err", err)
		return
	}
	if err := n.fsm.WaitApplied(ctx, idx); err != nil {
		return
	}
	if n.caught.gen.Load() == gen {
		n.caught.caughtUp.Store(gen)
	}
}
