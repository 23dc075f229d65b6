package fsm

import (
	"sort"
	"sync"
)

// Revocation kinds: what a committed entry invalidated.
const (
	// RevocationLease: one lease and its delegation subtree (Target: lease id).
	RevocationLease = "lease"
	// RevocationCompleted: the holder ended its lease (Target: lease id).
	RevocationCompleted = "completed"
	// RevocationSubtree: every lease delegated from Target, not Target itself.
	RevocationSubtree = "subtree"
	// RevocationIdentity: every lease of an identity (revoked, disabled,
	// moved, or deleted).
	RevocationIdentity = "identity"
	// RevocationRole: every lease issued through a role (revoked, rebound, deleted).
	RevocationRole = "role"
	// RevocationOwner: every lease of every identity the owner is accountable for.
	RevocationOwner = "owner"
	// RevocationSigningKey: every credential signed with a key (Target: kid).
	RevocationSigningKey = "signing_key"
	// RevocationPolicySet: a policy set changed; cached decisions under it
	// are stale (Target: set name).
	RevocationPolicySet = "policy_set"
)

// Revocation is one committed change that can invalidate credentials or
// cached decisions, as WatchRevocations streams it.
type Revocation struct {
	Index    uint64 // Raft index of the entry
	Kind     string // one of the Revocation* kinds
	Target   string // lease id, identity id, role name, owner, kid or policy set
	Reason   string
	UnixNano int64 // the entry's time
}

// DefaultRevocationHistory is how many revocations an FSM keeps for
// watchers when Config.RevocationHistory is zero.
const DefaultRevocationHistory = 16384

// revocationLog is a bounded, in-memory history of the revocations this
// replica applied. It is not replicated state: every replica derives the
// same events from the same entries, but one that restored a snapshot (or
// evicted old events) no longer knows what happened before. floor records
// that: every revocation committed after index floor is held.
type revocationLog struct {
	mu     sync.Mutex
	ring   []Revocation // capacity cap, oldest at start
	start  int
	n      int
	floor  uint64        // events at or below floor may be missing
	last   uint64        // every revocation up to last is recorded
	notify chan struct{} // closed and replaced on every advance
}

func newRevocationLog(capacity int) *revocationLog {
	if capacity <= 0 {
		capacity = DefaultRevocationHistory
	}
	return &revocationLog{ring: make([]Revocation, capacity), notify: make(chan struct{})}
}

// advance records the revocations of the entry at index (possibly none).
func (l *revocationLog) advance(index uint64, evs []Revocation) {
	l.mu.Lock()
	for _, ev := range evs {
		if l.n == len(l.ring) {
			// Evict the oldest: what came before it is no longer known.
			l.floor = l.ring[l.start].Index
			l.start = (l.start + 1) % len(l.ring)
			l.n--
		}
		l.ring[(l.start+l.n)%len(l.ring)] = ev
		l.n++
	}
	l.last = max(l.last, index)
	if len(evs) > 0 {
		close(l.notify)
		l.notify = make(chan struct{})
	}
	l.mu.Unlock()
}

// reset forgets everything: after a Restore at index, only revocations
// committed after it are known.
func (l *revocationLog) reset(index uint64) {
	l.mu.Lock()
	l.start, l.n, l.floor, l.last = 0, 0, index, index
	clear(l.ring)
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
}

// RevocationBatch is what Revocations returns.
type RevocationBatch struct {
	// Events committed after the requested index, in index order.
	Events []Revocation
	// Reset: the replica no longer holds every revocation after the
	// requested index (it restored a snapshot or evicted them). The caller
	// must drop everything it cached and resume after UpTo.
	Reset bool
	// UpTo: every revocation up to this index has been returned (or, with
	// Reset, the index to resume after). Use it as the next call's after.
	UpTo uint64
	// Next is closed when another revocation is recorded.
	Next <-chan struct{}
}

// Revocations returns up to limit (0: all held) revocations committed after
// index after. It never blocks on Apply; safe from any goroutine.
func (f *FSM) Revocations(after uint64, limit int) RevocationBatch {
	l := f.revs
	l.mu.Lock()
	defer l.mu.Unlock()
	b := RevocationBatch{Next: l.notify, UpTo: l.last}
	if after < l.floor {
		b.Reset = true
		return b
	}
	at := func(i int) Revocation { return l.ring[(l.start+i)%len(l.ring)] }
	// The ring is in index order: skip what the caller has seen.
	i := sort.Search(l.n, func(i int) bool { return at(i).Index > after })
	for ; i < l.n; i++ {
		ev := at(i)
		// A limit never splits one entry's events.
		if limit > 0 && len(b.Events) >= limit && ev.Index != b.Events[len(b.Events)-1].Index {
			// Cut: the caller has everything up to the last event given.
			b.UpTo = b.Events[len(b.Events)-1].Index
			break
		}
		b.Events = append(b.Events, ev)
	}
	return b
}

// revoked records a revocation of this entry, published after the commit.
func (a *applier) revoked(kind, target, reason string) {
	a.revEvents = append(a.revEvents, Revocation{Index: a.index, Kind: kind, Target: target, Reason: reason, UnixNano: a.now})
}
