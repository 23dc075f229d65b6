// Package fsm is Writ's deterministic replicated state machine: identities,
// roles, AppRole secret ids, policy sets, signing keys, nodes and leases.
//
// It imports neither Raft nor Cedar nor Connect and never reads a clock or
// randomness: time arrives in each entry's header, ids in its payload. Two
// replicas that apply the same entries hold byte-identical state (StateHash).
// See DESIGN.md for the rules that keep it so.
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

// Config configures an FSM. The zero value is usable.
type Config struct {
	// Logger receives halts and restores. Nil discards.
	Logger *slog.Logger
	// OnPolicySetChange is called synchronously from Apply, after the entry
	// is committed and visible to View, once per policy set stored or deleted
	// by it (deleted reports which). Restore calls it for every active set of
	// the restored state and, with deleted=true, for every set that was
	// active before and is not any more. It runs on the Apply goroutine, so
	// it must be quick and must not call Apply. May be nil.
	OnPolicySetChange func(ps *fsmpb.PolicySet, deleted bool)
	// RevocationHistory is how many revocations to keep for Revocations
	// (WatchRevocations). 0 means DefaultRevocationHistory.
	RevocationHistory int
	// Version is the FSM version this replica enforces: Apply halts on an
	// entry whose min_fsm_version is higher. 0 means Version. A lower value
	// makes this replica stand in for an older binary in tests of rolling
	// upgrades (node/DESIGN.md, "FSM versions"); it does not turn off what
	// newer versions apply.
	Version uint32
}

// version is the FSM version this replica enforces.
func (f *FSM) version() uint32 {
	if f.cfg.Version != 0 {
		return f.cfg.Version
	}
	return Version
}

// FSM is the replicated state.
//
// Concurrency: Apply and Restore must be called from one goroutine at a time
// (Raft's FSM goroutine). AppliedIndex, WaitApplied, View, Snapshot and
// StateHash are safe to call from any goroutine, concurrently with Apply;
// they never block it and it never blocks them.
type FSM struct {
	cfg Config

	// db is the writer's database, touched only by Apply and Restore.
	db *memdb.MemDB
	// leases is the writer's lease store (see leasestore.go): Apply
	// changes it in place; readers get clones.
	leases *leaseStore
	// meta is db's meta record once it has one. Bootstrap writes it once
	// and nothing changes it after, so publish looks it up only until it
	// is found; Restore, which replaces db, clears it.
	meta *meta
	// pub is the last committed state: an O(1) memdb snapshot and the index
	// it reflects, published together so a View's Index is exact.
	pub atomic.Pointer[published]

	mu     sync.Mutex
	waitCh chan struct{} // non-nil while someone waits; closed by publish

	revs *revocationLog

	// ov holds committed revocations not applied yet (overlay.go); nil
	// when empty, so a View pays one atomic load for it. ovMu orders
	// Overlay against prune.
	ov   atomic.Pointer[overlay]
	ovMu sync.Mutex
}

type published struct {
	db     *memdb.MemDB
	leases *leaseStore
	index  uint64
	// meta is the cluster's meta record at index (nil before Bootstrap),
	// carried here rather than looked up on every read: logins, node
	// tokens and audit hashing all ask for it.
	meta *meta
}

// New returns an empty FSM at index 0.
func New(cfg Config) *FSM {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &FSM{cfg: cfg, db: newDB(), leases: newLeaseStore(), revs: newRevocationLog(cfg.RevocationHistory)}
	f.publish(0)
	return f
}

// publish makes the writer's committed state visible at index and wakes
// WaitApplied callers.
func (f *FSM) publish(index uint64) {
	db := f.db.Snapshot()
	if f.meta == nil {
		f.meta, _ = firstIn(db.Txn(false), tMeta, "id", metaKey).(*meta)
	}
	f.pub.Store(&published{db: db, leases: f.leases.clone(), index: index, meta: f.meta})
	if f.ov.Load() != nil {
		f.prune(index)
	}
	f.mu.Lock()
	if f.waitCh != nil {
		close(f.waitCh)
		f.waitCh = nil
	}
	f.mu.Unlock()
}

// AppliedIndex is the Raft index of the last entry applied (or restored).
func (f *FSM) AppliedIndex() uint64 { return f.pub.Load().index }

// WaitApplied returns nil once AppliedIndex() >= index, or ctx's error
// (wrapped) if ctx ends first. It does not poll: Apply wakes it.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		if f.AppliedIndex() >= index {
			f.mu.Unlock()
			return nil
		}
		if f.waitCh == nil {
			f.waitCh = make(chan struct{})
		}
		ch := f.waitCh
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fsm: waiting for index %d (applied %d): %w", index, f.AppliedIndex(), ctx.Err())
		}
	}
}

// View returns an immutable, consistent read view of the state as of
// AppliedIndex(). It costs two small allocations and holds no lock; later
// Applies do not change it. Records it returns are shared with the state:
// callers must treat them as read-only.
//
// The view enforces the overlay (overlay.go) as it stands when the view is
// taken. The overlay is loaded before the state: publish prunes only after
// storing the state that applies the pruned entries, so a view sees each
// pushed revocation either applied or in its overlay.
func (f *FSM) View() *View {
	ov := f.ov.Load()
	p := f.pub.Load()
	v := &View{txn: p.db.Txn(false), leases: p.leases, index: p.index, m: p.meta, mSet: true}
	if ov != nil && ov.max > p.index {
		v.ov = ov
	}
	return v
}
