package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/rpc"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// Node implements rpc.Backend.
var _ rpc.Backend = (*Node)(nil)

// fresh fails closed when this node cannot vouch for its state: it has not
// completed a sync round (applied a read index from the leader) within its
// read lease, see freshness.go. A candidate is never fresh.
func (n *Node) fresh() error {
	switch n.raft.State() {
	case raft.Leader, raft.Follower:
		// The lease runs on the real monotonic clock; the injectable clock is
		// the log's notion of time (lease expiry), not this one.
		if n.caught.freshFor(n.freshLease()) {
			if n.logs != nil && !n.logs.caughtUp(n.fsm.AppliedIndex()) {
				// Entries it stored before a restart, or whose
				// announced revocations its overlay refused (announce.go).
				return rpc.ErrStale
			}
			return nil
		}
		if n.raft.State() == raft.Follower && n.raft.LastContact().IsZero() {
			return rpc.ErrNoLeader
		}
		return rpc.ErrStale
	case raft.Shutdown:
		return raft.ErrRaftShutdown
	default:
		return rpc.ErrStale
	}
}

// LocalView is the state as applied here, with no freshness check.
func (n *Node) LocalView() *fsm.View { return n.fsm.View() }

// Read returns a view satisfying opts (see rpc.Backend).
func (n *Node) Read(ctx context.Context, opts rpc.ReadOptions) (*fsm.View, error) {
	if opts.Linearizable {
		idx, err := n.readIndex(ctx)
		if err != nil {
			return nil, err
		}
		opts.MinIndex = max(opts.MinIndex, idx)
	} else if err := n.fresh(); err != nil {
		return nil, err
	}
	if opts.MinIndex > n.fsm.AppliedIndex() {
		if err := n.fsm.WaitApplied(ctx, opts.MinIndex); err != nil {
			return nil, err
		}
	}
	return n.fsm.View(), nil
}

// readIndex returns an index that covers every write committed before the
// call: on the leader after confirming leadership and applying everything
// committed; on a follower by asking the leader.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	var out uint64
	err := n.withLeader(ctx, func(ctx context.Context, addr string) error {
		if addr == "" { // this node leads
			idx, err := n.leaderReadIndex()
			out = idx
			return err
		}
		resp, err := n.peers.nodeClient(addr).WaitApplied(ctx, nodeRequest(n, &writv1.WaitAppliedRequest{ReadIndex: true}))
		if err != nil {
			return err
		}
		out = resp.Msg.GetAppliedIndex()
		return nil
	})
	return out, err
}

// await waits for a raft future, bounded by the node's life. hashicorp/raft
// v1.7.3 queues requests (Apply, Barrier, VerifyLeader, configuration
// changes) on channels its main loop reads, and a request queued while Raft
// shuts down is never answered: its future has no shutdown channel. The
// freshness loop once waited on such a VerifyLeader for ever and held Close
// (TestDenyNeverWrites hung for 10 minutes in a loaded -race run), and the
// leader loop did the same on establishLeadership's Barrier when the history
// run killed a leader (TestHistoryUnderFaults hung for 18 minutes in CI on
// 2026-12-03). Every future a goroutine of the node's wait group waits on
// goes through here. The waiting goroutine left behind in that case is the
// price of not blocking.
func (n *Node) await(f raft.Future) error {
	if n.ctx.Err() != nil {
		return raft.ErrRaftShutdown
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.ctx.Done():
		return raft.ErrRaftShutdown
	}
}

// verifyLeader is raft's VerifyLeader bounded by the node's life (await).
func (n *Node) verifyLeader() error {
	return n.await(n.raft.VerifyLeader())
}

// leaderReadIndex returns an index covering everything committed before the
// call, applied here. This node must lead.
func (n *Node) leaderReadIndex() (uint64, error) {
	// Until a barrier has committed in this term, the commit index may not
	// cover the previous terms' entries yet.
	if term := n.raft.CurrentTerm(); n.caught.barrierTerm.Load() != term {
		if err := n.await(n.raft.Barrier(5 * time.Second)); err != nil {
			return 0, leaderError(err)
		}
		n.caught.barrierTerm.Store(term)
	}
	// Raft's ReadIndex: note the commit index, then confirm with a heartbeat
	// round that a quorum still follows this leader. No log entry is written.
	commit := n.raft.CommitIndex()
	if err := n.verifyLeader(); err != nil {
		return 0, leaderError(err)
	}
	// The FSM's index moves only with command entries; raft's noops, barriers
	// and configuration entries never reach it. So the read index is the last
	// command at or before the commit index.
	idx, ok := n.lastCommand(commit)
	if !ok {
		if err := n.await(n.raft.Barrier(5 * time.Second)); err != nil {
			return 0, leaderError(err)
		}
		return n.fsm.AppliedIndex(), nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	if err := n.fsm.WaitApplied(ctx, idx); err != nil {
		return 0, err
	}
	return n.fsm.AppliedIndex(), nil
}

// lastCommand finds the last command entry at or before index in the local
// log, looking back at most 64 entries; ok is false when it cannot tell
// (the entries were compacted, or none of those is a command).
func (n *Node) lastCommand(index uint64) (uint64, bool) {
	if index <= n.fsm.AppliedIndex() {
		return index, true
	}
	for i := index; i > 0 && index-i < 64; i-- {
		if i <= n.fsm.AppliedIndex() {
			return i, true // everything from here down is applied already
		}
		var l raft.Log
		if err := n.store.GetLog(i, &l); err != nil {
			return 0, false
		}
		if l.Type == raft.LogCommand {
			return i, true
		}
	}
	return 0, false
}

// Propose replicates commands through the leader (see rpc.Backend).
func (n *Node) Propose(ctx context.Context, cmds []*fsmpb.Command, opts rpc.ProposeOptions) ([]*fsmpb.Result, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	for _, c := range cmds {
		if c.GetHeader().GetRequestId() == "" {
			return nil, errors.New("propose: every command needs a request id")
		}
	}
	if o := n.obs.commitSeconds; o != nil {
		defer func(start time.Time) { o.Observe(time.Since(start).Seconds()) }(time.Now())
	}
	var results []*fsmpb.Result
	var forwarded [][]byte // encoded once, on the first attempt that forwards
	urgent := opts.Urgent
	err := n.withLeader(ctx, func(ctx context.Context, addr string) error {
		if addr == "" { // this node leads
			var err error
			results, err = n.proposer.submit(ctx, cmds, opts.Urgent)
			return err
		}
		if forwarded == nil {
			var err error
			if forwarded, err = encodeForwarded(cmds); err != nil {
				return err
			}
			for _, c := range cmds {
				urgent = urgent || isUrgent(c)
			}
		}
		raw, err := n.fwd.forward(ctx, addr, forwarded, urgent)
		if err != nil {
			return err
		}
		if len(raw) != len(cmds) {
			return fmt.Errorf("leader returned %d results for %d commands", len(raw), len(cmds))
		}
		results = make([]*fsmpb.Result, len(cmds))
		var applied uint64
		for i, b := range raw {
			r := &fsmpb.Result{}
			if err := proto.Unmarshal(b, r); err != nil {
				return fmt.Errorf("decode forwarded result: %w", err)
			}
			results[i] = r
			applied = max(applied, r.GetIndex())
		}
		if urgent { // only a revocation's AwaitEverywhere asks
			n.answered.note(addr, applied)
		}
		return nil
	})
	return results, err
}

// encodeForwarded encodes commands for the leader, each marked Forwarded so
// that it is never forwarded again. A command is encoded through a shallow
// copy with its own header: the caller's command is not changed (a later
// attempt may find this node leading and submit it as it is), and its
// payload, the bulk of it, is not cloned.
func encodeForwarded(cmds []*fsmpb.Command) ([][]byte, error) {
	out := make([][]byte, len(cmds))
	for i, c := range cmds {
		h, _ := proto.Clone(c.GetHeader()).(*fsmpb.Header)
		if h == nil {
			h = &fsmpb.Header{}
		}
		h.Forwarded = true
		fwd := &fsmpb.Command{Header: h, Payload: c.GetPayload()}
		// Header and payload are all a Command has; bytes this binary
		// does not know (a newer field) travel on as they came.
		fwd.ProtoReflect().SetUnknown(c.ProtoReflect().GetUnknown())
		b, err := proto.Marshal(fwd)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// withLeader runs fn against the leader ("" when this node leads, else the
// leader's cluster (Raft) address), retrying with backoff through elections and
// leadership changes until HoldTimeout or ctx ends.
func (n *Node) withLeader(ctx context.Context, fn func(ctx context.Context, addr string) error) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HoldTimeout)
	defer cancel()
	backoff := 10 * time.Millisecond
	var lastErr error
	for {
		changed := n.caught.leaderChanged()
		addr, err := n.leaderCluster()
		if err == nil {
			err = fn(ctx, addr)
			if err == nil {
				return nil
			}
			if !(errors.Is(err, errRetryable) || (addr != "" && (retryableRemote(err) || peerReset(ctx, err)))) {
				return err
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			if errors.Is(lastErr, rpc.ErrNoLeader) || errors.Is(lastErr, errRetryable) || connect.CodeOf(lastErr) == connect.CodeUnavailable ||
				(connect.CodeOf(lastErr) == connect.CodeCanceled && errors.Is(ctx.Err(), context.DeadlineExceeded)) {
				return n.notLeaderError()
			}
			return fmt.Errorf("%w (last: %v)", ctx.Err(), lastErr)
		case <-time.After(backoff):
		case <-changed:
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// leaderCluster returns "" when this node leads, the leader's cluster
// (Raft) address when it is known, or ErrNoLeader. Node-to-node RPC runs on
// the cluster port, so forwarding needs nothing from the node table.
func (n *Node) leaderCluster() (string, error) {
	if n.raft.State() == raft.Leader {
		return "", nil
	}
	addr, id := n.raft.LeaderWithID()
	if addr == "" {
		return "", rpc.ErrNoLeader
	}
	return n.peerClusterAddr(string(id), string(addr)), nil
}

func (n *Node) notLeaderError() error {
	e := &rpc.NotLeaderError{}
	if _, id := n.raft.LeaderWithID(); id != "" {
		e.LeaderID = string(id)
		if node, ok := n.fsm.View().Node(string(id)); ok {
			e.LeaderAPIAddr = node.GetApiAddr()
		}
	}
	return e
}

// nodeRequest wraps a node-to-node message with the node token.
func nodeRequest[T any](n *Node, msg *T) *connect.Request[T] {
	req := connect.NewRequest(msg)
	req.Header().Set(rpc.NodeTokenHeader, rpc.NodeToken(n.fsm.View()))
	return req
}

// ApplyForwarded applies commands a follower forwarded; never forwards again.
func (n *Node) ApplyForwarded(ctx context.Context, cmds []*fsmpb.Command) ([]*fsmpb.Result, error) {
	if n.raft.State() != raft.Leader {
		return nil, n.notLeaderError()
	}
	for _, c := range cmds {
		if c.GetHeader().GetRequestId() == "" {
			return nil, fmt.Errorf("forwarded command without request id")
		}
	}
	res, err := n.proposer.submit(ctx, cmds, false)
	if errors.Is(err, errRetryable) {
		return nil, n.notLeaderError()
	}
	return res, err
}

// WaitApplied waits for the local FSM to apply index (see rpc.Backend).
func (n *Node) WaitApplied(ctx context.Context, index uint64, readIndex bool) (uint64, error) {
	if readIndex {
		if n.raft.State() != raft.Leader {
			return 0, n.notLeaderError()
		}
		idx, err := n.leaderReadIndex()
		if errors.Is(err, errRetryable) {
			return 0, n.notLeaderError()
		}
		return idx, err
	}
	if err := n.fsm.WaitApplied(ctx, index); err != nil {
		return n.fsm.AppliedIndex(), err
	}
	return n.fsm.AppliedIndex(), nil
}

// PushRevocation puts a committed revocation in force here (see rpc.Backend).
func (n *Node) PushRevocation(ctx context.Context, p fsm.Pending) (uint64, error) {
	if n.fsm.Overlay(p) {
		return n.fsm.AppliedIndex(), nil
	}
	return n.WaitApplied(ctx, p.Index, false)
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	default:
		return "shutdown"
	}
}

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// Join adds a server as a voter; only the leader can (others answer with a hint).
func (n *Node) Join(ctx context.Context, req *writv1.JoinRequest) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, n.notLeaderError()
	}
	id, addr := raft.ServerID(req.GetNodeId()), raft.ServerAddress(req.GetRaftAddr())
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return 0, err
	}
	present := false
	for _, srv := range cf.Configuration().Servers {
		if srv.ID == id && srv.Address == addr {
			present = true
		} else if srv.ID == id || srv.Address == addr {
			// Same id at a new address, or a new id at an old address: replace.
			if err := n.await(n.raft.RemoveServer(srv.ID, 0, 10*time.Second)); err != nil {
				return 0, leaderError(err)
			}
		}
	}
	if !present {
		if err := n.await(n.raft.AddVoter(id, addr, 0, 10*time.Second)); err != nil {
			return 0, leaderError(err)
		}
		n.log.Info("server joined", "id", id, "raft_addr", addr)
	}
	results, err := n.Propose(ctx, []*fsmpb.Command{registerCommand(&fsmpb.Node{
		Id: req.GetNodeId(), RaftAddr: req.GetRaftAddr(), ApiAddr: req.GetApiAddr(),
	})}, rpc.ProposeOptions{})
	if err != nil {
		return 0, err
	}
	return results[0].GetIndex(), nil
}

// Leave removes a server from the Raft configuration (leader only).
func (n *Node) Leave(ctx context.Context, nodeID string) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, n.notLeaderError()
	}
	if n.gossip != nil && nodeID != n.cfg.NodeID {
		// The reconcile would add a live server straight back.
		if n.members.state(nodeID) == gossipAlive {
			return 0, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("server %s is alive in gossip: run `writ leave` against it to make it depart", nodeID))
		}
	}
	if err := n.await(n.raft.RemoveServer(raft.ServerID(nodeID), 0, 10*time.Second)); err != nil {
		return 0, leaderError(err)
	}
	results, err := n.Propose(ctx, []*fsmpb.Command{removeCommand(nodeID)}, rpc.ProposeOptions{})
	if err != nil {
		return 0, err
	}
	return results[0].GetIndex(), nil
}

// Revocations returns the revocations this node applied after index after.
func (n *Node) Revocations(after uint64, limit int) fsm.RevocationBatch {
	return n.fsm.Revocations(after, limit)
}
