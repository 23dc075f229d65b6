package fsm

import "github.com/writ-dev/writ/fsm/fsmpb"

// The overlay: committed revocations this replica has not applied yet.
//
// The node that took a Revoke learns that the entry committed before most
// followers do (hashicorp/raft tells followers the commit index only with
// the next append), so it pushes the revocation's target to every peer, and
// each installs it here until its own Apply reaches the entry's index.
// Every View taken meanwhile judges leases as if the entry were applied.
// That is safe because the entry is committed (every replica will apply it,
// at that index) and a revocation only ever makes leases invalid: nothing a
// later entry does can make a lease the entry revoked valid again in a view
// older than the entry.
//
// Keyed by target, not by the leases present now: a lease issued and
// revoked before this replica applied its issuance is still rejected once
// the issuance is applied and the revocation not yet. And since a view
// older than the entry holds only leases issued before it, "every lease of
// identity X in a view older than index I" is exactly what RevokeIdentity
// at I invalidates (likewise role, owner, and subtree for the children of a
// lease).
//
// The overlay is not replicated state and never reaches Apply: the
// applier's own view (apply.go) has no overlay, so replicas stay identical.
// It is memory only; after a restart the node is not fresh (node/
// freshness.go) until it has applied a read index taken after the restart,
// which covers every revocation committed before.

// Pending is a committed revocation this replica may not have applied yet.
type Pending struct {
	Index uint64 // the entry's Raft index
	// Kind is RevocationLease, RevocationCompleted, RevocationSubtree,
	// RevocationIdentity, RevocationRole or RevocationOwner.
	Kind string
	ID   string // lease id, identity id, role name or owner
	// Holders are voters known to hold the entry in their Raft log, and so
	// to enforce it (Announce): Revoke's wait sends them nothing. Not part
	// of what the overlay stores.
	Holders []string
}

// MaxOverlay bounds the overlay; past it Overlay refuses (the caller then
// waits for the apply, as before the overlay existed).
const MaxOverlay = 4096

// PendingOf returns what a revocation command invalidates, with Index 0;
// false for any other command.
func PendingOf(cmd *fsmpb.Command) (Pending, bool) {
	switch p := cmd.GetPayload().(type) {
	case *fsmpb.Command_RevokeLease:
		r := p.RevokeLease
		switch {
		case r.GetDescendantsOnly():
			return Pending{Kind: RevocationSubtree, ID: r.GetLeaseId()}, true
		case r.GetCompleted():
			return Pending{Kind: RevocationCompleted, ID: r.GetLeaseId()}, true
		}
		return Pending{Kind: RevocationLease, ID: r.GetLeaseId()}, true
	case *fsmpb.Command_RevokeIdentity:
		return Pending{Kind: RevocationIdentity, ID: p.RevokeIdentity.GetIdentityId()}, true
	case *fsmpb.Command_RevokeRole:
		return Pending{Kind: RevocationRole, ID: p.RevokeRole.GetName()}, true
	case *fsmpb.Command_RevokeOwner:
		return Pending{Kind: RevocationOwner, ID: p.RevokeOwner.GetOwner()}, true
	}
	return Pending{}, false
}

// PendingKind reports whether kind is one the overlay enforces.
func PendingKind(kind string) bool {
	switch kind {
	case RevocationLease, RevocationCompleted, RevocationSubtree, RevocationIdentity, RevocationRole, RevocationOwner:
		return true
	}
	return false
}

type overlayKey struct{ kind, id string }

// overlay is immutable once published; Overlay and prune replace it.
type overlay struct {
	min   uint64                // lowest index held: prune has nothing to do below it
	max   uint64                // highest index held
	byKey map[overlayKey]uint64 // highest index per target
}

// in reports whether a revocation of (kind, id) committed after the view's
// index is held.
func (o *overlay) in(index uint64, kind, id string) bool {
	i, ok := o.byKey[overlayKey{kind, id}]
	return ok && i > index
}

// reason is checkOne's verdict for a lease that passed every applied check.
func (o *overlay) reason(index uint64, l *leaseRec) string {
	switch {
	case o.in(index, RevocationLease, l.id):
		return ReasonRevoked
	case o.in(index, RevocationCompleted, l.id):
		return ReasonCompleted
	case o.in(index, RevocationIdentity, l.g.identity):
		return ReasonIdentityRevoked
	case o.in(index, RevocationRole, l.g.role):
		return ReasonRoleRevoked
	case o.in(index, RevocationOwner, l.g.owner):
		return ReasonOwnerRevoked
	}
	return ""
}

// Overlay enforces p on every View taken from now on until AppliedIndex
// reaches p.Index. It reports whether p is in force here: true when
// installed or already applied (a push for an applied index is a no-op),
// false when p's kind is not one the overlay knows or the overlay is full.
// Safe for concurrent use; it never blocks Apply for longer than a copy of
// the (small) overlay.
func (f *FSM) Overlay(p Pending) bool { return f.OverlayAll([]Pending{p}) }

// OverlayAll is Overlay for the revocations of one log entry, with one copy
// of the overlay for all of them: an entry may hold a batch of hundreds. It
// installs what fits (a target already held always fits) and reports
// whether every one is in force here.
func (f *FSM) OverlayAll(ps []Pending) bool {
	f.ovMu.Lock()
	defer f.ovMu.Unlock()
	applied := f.AppliedIndex()
	var n *overlay
	all := true
	for _, p := range ps {
		switch {
		case !PendingKind(p.Kind) || p.ID == "":
			all = false
			continue
		case p.Index <= applied:
			continue
		}
		if n == nil {
			n = f.ov.Load().without(applied)
		}
		k := overlayKey{p.Kind, p.ID}
		if _, held := n.byKey[k]; !held && len(n.byKey) >= MaxOverlay {
			all = false
			continue
		}
		n.byKey[k] = max(n.byKey[k], p.Index)
		n.min, n.max = min(n.min, p.Index), max(n.max, p.Index)
	}
	if n != nil {
		f.ov.Store(n)
	}
	return all
}

// without copies o less the entries index covers (o may be nil).
func (o *overlay) without(index uint64) *overlay {
	n := &overlay{min: ^uint64(0), byKey: map[overlayKey]uint64{}}
	if o == nil {
		return n
	}
	for k, i := range o.byKey {
		if i > index {
			n.byKey[k] = i
			n.min, n.max = min(n.min, i), max(n.max, i)
		}
	}
	return n
}

// OverlayLen is the number of targets held in the overlay.
func (f *FSM) OverlayLen() int {
	if o := f.ov.Load(); o != nil {
		return len(o.byKey)
	}
	return 0
}

// prune drops what index covers; publish calls it after making index
// visible, so a View never sees neither the entry nor its overlay.
func (f *FSM) prune(index uint64) {
	f.ovMu.Lock()
	defer f.ovMu.Unlock()
	switch old := f.ov.Load(); {
	case old == nil || index < old.min:
	case index >= old.max:
		f.ov.Store(nil)
	default:
		f.ov.Store(old.without(index))
	}
}
