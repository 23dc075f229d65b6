// Package rpc serves Writ's Connect API (Connect, gRPC and gRPC-Web, JSON and
// binary, over HTTP/1.1 and h2c) with thin handlers over the domain packages.
// It knows nothing of Raft: the running node implements Backend.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// ReadOptions say how fresh a read must be.
type ReadOptions struct {
	// MinIndex makes the read wait until the node has applied this index.
	MinIndex uint64
	// Linearizable confirms leadership and waits for the leader's commit index.
	Linearizable bool
}

// ProposeOptions tune one write.
type ProposeOptions struct {
	// Urgent pushes the commit to followers at once instead of waiting for
	// the next append (revocations).
	Urgent bool
}

// Backend is what the handlers need from a running node. Implementations are
// safe for concurrent use.
type Backend interface {
	NodeID() string
	// Read returns a consistent read view satisfying opts. It fails with
	// ErrStale once the node has lost contact with the leader for longer than
	// its max staleness, and with ctx's error when waiting is cut short.
	Read(ctx context.Context, opts ReadOptions) (*fsm.View, error)
	// LocalView returns the local state as applied, with no freshness check
	// (for authenticating callers, not for decisions).
	LocalView() *fsm.View
	// Propose replicates commands through the leader (followers forward),
	// group-committed with other writes; one result per command, in order.
	// Commands must carry a request id (the dedupe key).
	Propose(ctx context.Context, cmds []*fsmpb.Command, opts ProposeOptions) ([]*fsmpb.Result, error)
	// AwaitEverywhere returns once the committed revocation p is in force on
	// every node in contact with the leader: applied there, or installed in
	// its overlay of committed revocations (fsm.FSM.Overlay; p.Kind "" only
	// waits for the apply of p.Index). Nodes out of contact longer than max
	// staleness already fail closed, so they are not waited for past that.
	AwaitEverywhere(ctx context.Context, p fsm.Pending) error
	// ApplyForwarded applies commands a follower forwarded. It never forwards
	// again: a non-leader returns a *NotLeaderError.
	ApplyForwarded(ctx context.Context, cmds []*fsmpb.Command) ([]*fsmpb.Result, error)
	// WaitApplied waits until the local FSM applied index and returns the applied index.
	// With readIndex the receiver must be the leader: it confirms leadership
	// and returns an index covering everything committed (a read index).
	WaitApplied(ctx context.Context, index uint64, readIndex bool) (uint64, error)
	// PushRevocation puts a committed revocation in force here (a peer's
	// AwaitEverywhere): into the FSM's overlay at once, or, when the overlay
	// refuses it, by waiting for the apply. It returns the applied index.
	PushRevocation(ctx context.Context, p fsm.Pending) (uint64, error)
	// NotePeerVersion records the FSM version a server reported with its
	// read index request (the leader stamps and lowers writes for the
	// oldest version among its configuration's servers).
	NotePeerVersion(nodeID string, fsmVersion uint32)
	Status(ctx context.Context) (*writv1.StatusResponse, error)
	Join(ctx context.Context, req *writv1.JoinRequest) (uint64, error)
	Leave(ctx context.Context, nodeID string) (uint64, error)
	// Ready reports whether the node has a leader within max staleness.
	Ready() error
	// SnapshotSave writes a consistent snapshot of the local (fresh) state.
	SnapshotSave(ctx context.Context, w io.Writer) error
	// SnapshotRestore installs a snapshot cluster-wide (leader only) and
	// returns an index at which it is in force.
	SnapshotRestore(ctx context.Context, r io.Reader) (uint64, error)
	// Revocations returns the revocations this node applied after index
	// after (see fsm.FSM.Revocations). It never blocks.
	Revocations(after uint64, limit int) fsm.RevocationBatch
}

var (
	// ErrStale: the node lost contact with the leader for longer than its max staleness.
	ErrStale = errors.New("node has lost contact with the leader for longer than max staleness")
	// ErrNoLeader: no leader is known (election in progress or no quorum).
	ErrNoLeader = errors.New("no leader")
	// ErrOverloaded: the write queue is full.
	ErrOverloaded = errors.New("write queue full")
	// ErrFSMVersion: a server of the cluster runs an FSM version too old to
	// apply the write, and the write has no form it applies alike.
	ErrFSMVersion = errors.New("a server of the cluster runs an older FSM version")
	// ErrBadSnapshot: an uploaded snapshot cannot be restored.
	ErrBadSnapshot = errors.New("bad snapshot")
	// ErrNotBootstrapped: the cluster has not applied its bootstrap entry yet.
	ErrNotBootstrapped = errors.New("cluster not bootstrapped yet")
)

// NotLeaderError says who the leader is, when known.
type NotLeaderError struct {
	LeaderID      string
	LeaderAPIAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAPIAddr == "" {
		return "not the leader; leader unknown"
	}
	return fmt.Sprintf("not the leader; leader is %s at %s", e.LeaderID, e.LeaderAPIAddr)
}

// Is makes errors.Is(err, ErrNoLeader) true for a NotLeaderError without a known leader.
func (e *NotLeaderError) Is(target error) bool {
	return target == ErrNoLeader && e.LeaderAPIAddr == ""
}

// Clock is the time source handlers use.
type Clock interface{ Now() time.Time }
