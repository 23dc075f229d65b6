package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// departFlag is set once Depart starts; loops that would re-join stop.
type departFlag struct{ v atomic.Bool }

func (n *Node) departing() bool { return n.depart.v.Load() }

// Departed is closed once a graceful Depart has stopped this node (the
// server process exits then).
func (n *Node) Departed() <-chan struct{} { return n.departed }

// Depart leaves the cluster gracefully: a leader first hands leadership to
// another voter; then the node leaves gossip, which the leader sees as a
// graceful leave and answers by removing it from the Raft voters and the
// node table; once the leader's configuration no longer lists it, the node
// stops (Departed closes). Calling it again while (or after) a departure
// is under way waits for the removal again. The only voter cannot depart (ErrLastVoter);
// gossip must be on (without it, remove the node with `writ leave NODE_ID`
// from another node).
func (n *Node) Depart(ctx context.Context) (uint64, error) {
	if n.gossip == nil {
		return 0, connect.NewError(connect.CodeFailedPrecondition, errors.New("graceful leave needs gossip; remove this node from another member with `writ leave NODE_ID`"))
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return 0, err
	}
	voters := 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
			voters++
		}
	}
	if voters == 0 {
		return 0, connect.NewError(connect.CodeFailedPrecondition, ErrLastVoter)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if n.depart.v.CompareAndSwap(false, true) {
		if n.raft.State() == raft.Leader {
			n.log.Info("leaving: transferring leadership")
			if err := n.await(n.raft.LeadershipTransfer()); err != nil {
				n.depart.v.Store(false)
				return 0, connect.NewError(connect.CodeUnavailable, fmt.Errorf("leadership transfer: %w", err))
			}
		}
		n.log.Info("leaving gossip")
		if err := n.gossip.leave(10 * time.Second); err != nil {
			n.log.Warn("gossip leave", "err", err)
		}
	} else {
		// A departure already under way (or one whose wait for the leader
		// timed out): wait for the removal again.
		n.log.Info("departure already under way; waiting for the leader to remove this node")
	}
	idx, err := n.awaitRemoval(ctx)
	if err != nil {
		return 0, connect.NewError(connect.CodeUnavailable, fmt.Errorf("left gossip, but the leader has not removed this node from the voters: %w", err))
	}
	n.log.Info("left the cluster; stopping")
	go func() {
		_ = n.Close()
		n.departOnce.Do(func() { close(n.departed) })
	}()
	return idx, nil
}

// awaitRemoval polls the leader (over the cluster port) until its Raft
// configuration no longer holds this node, and returns its commit index.
// A node that has just handed leadership away may never hear from the new
// leader (it removes this node and stops replicating to it), so without a
// leader of its own it asks every other server of its last configuration
// and takes the answer of the one that leads.
func (n *Node) awaitRemoval(ctx context.Context) (uint64, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		addr, id := n.raft.LeaderWithID()
		switch {
		case string(id) == n.cfg.NodeID:
			last = errors.New("still the leader")
		case id != "":
			idx, err := n.removedAccordingTo(ctx, string(addr), false)
			if err == nil {
				return idx, nil
			}
			last = err
		default:
			last = errors.New("no leader known, and no other server answers as the leader")
			if cf := n.raft.GetConfiguration(); cf.Error() == nil {
				for _, srv := range cf.Configuration().Servers {
					if string(srv.ID) == n.cfg.NodeID {
						continue
					}
					idx, err := n.removedAccordingTo(ctx, n.peerClusterAddr(string(srv.ID), string(srv.Address)), true)
					if err == nil {
						return idx, nil
					}
					if !errors.Is(err, errNotLeading) {
						last = err
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}

var errNotLeading = errors.New("not the leader")

// removedAccordingTo asks the server at addr for its Raft configuration:
// nil (with its commit index) once that no longer lists this node as a
// voter. With mustLead, only a server that says it leads is believed.
func (n *Node) removedAccordingTo(ctx context.Context, addr string, mustLead bool) (uint64, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := n.peers.memberClient(addr).RaftStats(cctx, connect.NewRequest(&writv1.RaftStatsRequest{}))
	switch {
	case err != nil:
		return 0, err
	case mustLead && resp.Msg.GetStats().GetState() != "leader":
		return 0, errNotLeading
	case slices.Contains(resp.Msg.GetVoters(), n.cfg.NodeID):
		return 0, errors.New("still a voter")
	}
	return resp.Msg.GetStats().GetCommitIndex(), nil
}
