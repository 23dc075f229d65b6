package fsm

import (
	"fmt"
	"math"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

const (
	// DedupeWindow is how long (by entry header time) a request id's result
	// is remembered.
	DedupeWindow = 10 * time.Minute
	// pruneRowsPerApply bounds dedupe pruning work per Apply: at most this
	// many entries' rows are forgotten per entry applied (one row is added
	// per entry at most, so pruning keeps up).
	pruneRowsPerApply = 4
	// DefaultReapLimit is ReapExpired's limit when the command gives none.
	DefaultReapLimit = 10000
	// MaxLeaseAncestors bounds a delegation chain: CheckLease walks at most
	// this many parents, and a lease whose chain is longer is invalid.
	MaxLeaseAncestors = 16
)

// Apply applies one log entry at Raft index `index` and returns one result
// per command: a Batch yields one per item, in order; any other command
// exactly one. Every result carries Index = index, except a deduplicated
// one, which is the stored result of the entry that first applied it.
// Results (and the records they point to) are shared with the state:
// callers must treat them as read-only.
//
// A failed precondition is a result code, never a panic. Apply panics —
// halting the replica, so that replicas never diverge — when data does not
// decode, or when CheckCommand rejects the command (a payload this version
// does not know and not ignorable, or min_fsm_version above the replica's
// version, Config.Version or Version). It checks
// that before touching the state, so a halt leaves nothing half-applied.
//
// Concurrency: one goroutine at a time calls Apply or Restore. Views and
// snapshots taken concurrently see the state before or after the entry,
// never a part of it.
func (f *FSM) Apply(index uint64, data []byte) []*fsmpb.Result {
	cmd, err := Decode(data)
	if err == nil {
		err = checkCommand(cmd, f.version())
	}
	if err != nil {
		f.cfg.Logger.Error("fsm: halting: cannot apply entry", "index", index, "err", err)
		panic(fmt.Errorf("fsm: halting at entry %d: %w", index, err))
	}

	txn := f.db.Txn(true)
	defer txn.Abort() // no-op after Commit; releases the writer if anything panics
	a := &applier{txn: txn, ls: f.leases, index: index, now: cmd.GetHeader().GetTimeUnixNano()}
	var results []*fsmpb.Result
	if b, ok := cmd.GetPayload().(*fsmpb.Command_Batch); ok {
		items := b.Batch.GetCommands()
		results = make([]*fsmpb.Result, len(items))
		if len(items) > 1 {
			a.pending = make(map[string]*fsmpb.Result, len(items))
		}
		for i, item := range items {
			results[i] = a.applyItem(item)
		}
	} else {
		results = []*fsmpb.Result{a.applyItem(cmd)}
	}
	a.rememberRequests()
	a.pruneRequests()
	txn.Commit()
	f.publish(index)
	f.revs.advance(index, a.revEvents)

	if f.cfg.OnPolicySetChange != nil {
		for _, ev := range a.policyEvents {
			f.cfg.OnPolicySetChange(ev.ps, ev.deleted)
		}
	}
	return results
}

type policyEvent struct {
	ps      *fsmpb.PolicySet
	deleted bool
}

// applier applies one entry inside one memdb write transaction.
type applier struct {
	txn *memdb.Txn
	// ls is the writer's lease store, changed in place: the checks that
	// can halt run before anything changes, and a halt after that (a
	// programming error) stops the replica, which rebuilds from its log.
	ls    *leaseStore
	index uint64
	now   int64 // the entry header's time: the only clock

	reqs         []appliedReq             // request ids this entry applied successfully
	pending      map[string]*fsmpb.Result // the same, by id, for batches
	policyEvents []policyEvent
	revEvents    []Revocation
}

// applyItem applies one command unless its request id was applied within
// DedupeWindow (by entry time), in which case it returns the stored result
// and changes nothing.
//
// Only successful results are remembered: a failed command changed nothing,
// so replaying it is harmless, and a caller may retry the same request id
// after, say, POLICY_CHANGED with a fresh decision (rpc does exactly that).
func (a *applier) applyItem(cmd *fsmpb.Command) *fsmpb.Result {
	rid := cmd.GetHeader().GetRequestId()
	if p, ok := cmd.GetPayload().(*fsmpb.Command_IssueLease); ok {
		// Issuance dedupes by lease id (see issueLease): no row, no index key.
		r := a.issueLease(p.IssueLease, rid)
		if r.Index == 0 {
			r.Index = a.index
		}
		return r
	}
	if rid != "" {
		if r := a.applied(rid); r != nil {
			return r
		}
	}
	r := a.apply(cmd)
	r.Index = a.index
	if rid != "" && r.Code == codeOK {
		a.reqs = append(a.reqs, appliedReq{ID: rid, Result: r})
		if a.pending != nil {
			a.pending[rid] = r
		}
	}
	return r
}

func (a *applier) applied(rid string) *fsmpb.Result {
	if a.pending != nil {
		if r := a.pending[rid]; r != nil {
			return r
		}
	} else {
		for i := range a.reqs {
			if a.reqs[i].ID == rid {
				return a.reqs[i].Result
			}
		}
	}
	// A row older than the window may still await pruning (which is
	// bounded per Apply); it no longer counts.
	if row, _ := a.first(tApplied, iRequest, rid).(*appliedEntry); row != nil && row.Time >= a.now-int64(DedupeWindow) {
		return row.result(rid)
	}
	return nil
}

// rememberRequests stores this entry's successful request ids as one row.
func (a *applier) rememberRequests() {
	if len(a.reqs) > 0 {
		a.put(tApplied, &appliedEntry{Index: a.index, Time: a.now, Reqs: a.reqs})
	}
}

// pruneRequests forgets the rows of the oldest entries whose time is more
// than DedupeWindow before this entry's, a bounded number per Apply. Rows
// are visited in index order and pruning stops at the first row still inside
// the window, so the work is O(rows pruned) and the same on every replica.
func (a *applier) pruneRequests() {
	cutoff := a.now - int64(DedupeWindow)
	it, err := a.txn.Get(tApplied, "id")
	if err != nil {
		panic(fmt.Sprintf("fsm: scan %s: %v", tApplied, err))
	}
	var old [pruneRowsPerApply]any
	n := 0
	for raw := it.Next(); raw != nil && n < len(old); raw = it.Next() {
		if raw.(*appliedEntry).Time >= cutoff {
			break
		}
		old[n] = raw
		n++
	}
	for _, row := range old[:n] {
		a.del(tApplied, row)
	}
}

// ---- result helpers ----

const (
	codeOK           = fsmpb.ResultCode_RESULT_CODE_OK
	codeNotFound     = fsmpb.ResultCode_RESULT_CODE_NOT_FOUND
	codeExists       = fsmpb.ResultCode_RESULT_CODE_ALREADY_EXISTS
	codePrecondition = fsmpb.ResultCode_RESULT_CODE_FAILED_PRECONDITION
	codeExhausted    = fsmpb.ResultCode_RESULT_CODE_RESOURCE_EXHAUSTED
	codeInvalid      = fsmpb.ResultCode_RESULT_CODE_INVALID_ARGUMENT
	codeDenied       = fsmpb.ResultCode_RESULT_CODE_PERMISSION_DENIED
	codeAborted      = fsmpb.ResultCode_RESULT_CODE_ABORTED
	codePolicy       = fsmpb.ResultCode_RESULT_CODE_POLICY_CHANGED
)

func fail(code fsmpb.ResultCode, format string, args ...any) *fsmpb.Result {
	return &fsmpb.Result{Code: code, Message: fmt.Sprintf(format, args...)}
}

func ok() *fsmpb.Result { return &fsmpb.Result{Code: codeOK} }

// ---- transaction helpers ----
//
// A memdb error here means a record broke the schema (a missing required
// field Apply should have validated): a programming error that would
// otherwise make this replica diverge, so it halts like an unknown command.

func (a *applier) first(table, index string, args ...any) any {
	raw, err := a.txn.First(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("fsm: entry %d: read %s.%s: %v", a.index, table, index, err))
	}
	return raw
}

func (a *applier) put(table string, obj any) {
	if err := a.txn.Insert(table, obj); err != nil {
		panic(fmt.Sprintf("fsm: entry %d: write %s: %v", a.index, table, err))
	}
}

func (a *applier) del(table string, obj any) {
	if err := a.txn.Delete(table, obj); err != nil {
		panic(fmt.Sprintf("fsm: entry %d: delete %s: %v", a.index, table, err))
	}
}

func (a *applier) iter(table, index string, args ...any) memdb.ResultIterator {
	it, err := a.txn.Get(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("fsm: entry %d: scan %s.%s: %v", a.index, table, index, err))
	}
	return it
}

// view reads through the entry's own transaction (it sees earlier items of
// the same batch).
func (a *applier) view() *View { return &View{txn: a.txn, leases: a.ls, index: a.index} }

// addNanos is t+d, saturating instead of overflowing.
func addNanos(t, d int64) int64 {
	if d > 0 && t > math.MaxInt64-d {
		return math.MaxInt64
	}
	return t + d
}
