// Package fsm is Writ's deterministic replicated state machine: identities,
// roles, AppRole secret ids, policy sets, signing keys, nodes and leases.
// It imports neither Raft nor Cedar nor Connect and never reads a clock or
// randomness: time arrives in each entry's header, ids in its payload.
package fsm

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Config configures an FSM.
type Config struct {
	Logger *slog.Logger
	// OnPolicySetChange is called synchronously from Apply (and Restore)
	// after a policy set is stored or deleted. May be nil.
	OnPolicySetChange func(ps *fsmpb.PolicySet, deleted bool)
}

// FSM holds the state. Apply and Restore must be called from one goroutine
// at a time (Raft's FSM goroutine); View, Snapshot, AppliedIndex and
// WaitApplied are safe to call concurrently with them.
type FSM struct {
	cfg Config
	db  atomic.Pointer[memdb.MemDB]

	applied atomic.Uint64
	mu      sync.Mutex
	advance chan struct{} // closed and replaced whenever applied moves
}

// New returns an empty FSM.
func New(cfg Config) *FSM {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &FSM{cfg: cfg, advance: make(chan struct{})}
	f.db.Store(newDB())
	return f
}

// AppliedIndex is the Raft index of the last entry applied.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

func (f *FSM) setApplied(index uint64) {
	f.applied.Store(index)
	f.mu.Lock()
	close(f.advance)
	f.advance = make(chan struct{})
	f.mu.Unlock()
}

// WaitApplied returns once AppliedIndex() >= index, or ctx's error.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		ch := f.advance
		f.mu.Unlock()
		if f.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (applied %d): %w", index, f.applied.Load(), ctx.Err())
		}
	}
}

// View returns a consistent, immutable read view of the current state.
// Records it returns are shared: callers must not modify them.
func (f *FSM) View() *View {
	// Load the index before the tree: the view may be newer than it says, never older.
	idx := f.applied.Load()
	return &View{txn: f.db.Load().Txn(false), index: idx}
}

// Apply applies one log entry at Raft index `index` and returns one result
// per command (a Batch yields one per item, in order). Failed preconditions
// are results, never panics. It panics — halting the replica, so replicas
// never diverge — on bytes that are not an entry, on a payload it does not
// know unless the header marks it ignorable, and on a min_fsm_version above
// Version.
func (f *FSM) Apply(index uint64, data []byte) []*fsmpb.Result {
	cmd, err := Decode(data)
	if err != nil {
		panic(fmt.Sprintf("fsm: entry %d: %v", index, err))
	}
	if v := cmd.GetHeader().GetMinFsmVersion(); v > Version {
		panic(fmt.Sprintf("fsm: entry %d needs FSM version %d; this binary has %d: upgrade it", index, v, Version))
	}
	a := &applier{f: f, txn: f.db.Load().Txn(true), index: index, now: cmd.GetHeader().GetTimeUnixNano()}
	var results []*fsmpb.Result
	if b, ok := cmd.GetPayload().(*fsmpb.Command_Batch); ok {
		results = make([]*fsmpb.Result, len(b.Batch.GetCommands()))
		for i, item := range b.Batch.GetCommands() {
			results[i] = a.applyDeduped(item)
		}
	} else {
		results = []*fsmpb.Result{a.applyDeduped(cmd)}
	}
	a.prune()
	a.txn.Commit()
	f.setApplied(index)
	for _, ev := range a.policyEvents {
		if f.cfg.OnPolicySetChange != nil {
			f.cfg.OnPolicySetChange(ev.ps, ev.deleted)
		}
	}
	return results
}
