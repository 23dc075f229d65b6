package fsm

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Every revocation below is one small entry whatever the number of leases it
// hits: it moves an epoch (or a status) that CheckLease compares at read
// time, and nothing is cascaded at write time.

// revokeRole bumps the role's epoch: every lease issued through it fails
// CheckLease with role_revoked.
func (a *applier) revokeRole(p *fsmpb.RevokeRole) *fsmpb.Result {
	old, _ := a.first(tRole, "id", p.GetName()).(*fsmpb.Role)
	if old == nil {
		return fail(codeNotFound, "role %q not found", p.GetName())
	}
	n := proto.Clone(old).(*fsmpb.Role)
	n.Epoch++
	n.Version++
	n.UpdatedUnixNano = a.now
	a.put(tRole, n)
	a.revoked(RevocationRole, n.Name, p.GetReason())
	return &fsmpb.Result{Code: codeOK, Version: n.Version}
}

// revokeOwner bumps the owner's epoch: every lease of every identity the
// owner is accountable for fails CheckLease with owner_revoked. An owner no
// identity names yet is valid: its epoch simply starts above 0.
func (a *applier) revokeOwner(p *fsmpb.RevokeOwner) *fsmpb.Result {
	if p.GetOwner() == "" {
		return fail(codeInvalid, "owner is required")
	}
	old, _ := a.first(tOwner, "id", p.GetOwner()).(*fsmpb.OwnerEpoch)
	a.put(tOwner, &fsmpb.OwnerEpoch{Owner: p.GetOwner(), Epoch: old.GetEpoch() + 1})
	a.revoked(RevocationOwner, p.GetOwner(), p.GetReason())
	return &fsmpb.Result{Code: codeOK, Version: old.GetEpoch() + 1}
}

// retireSigningKey removes a key; the newest key (the one that signs) can
// only go once another has replaced it.
func (a *applier) retireSigningKey(p *fsmpb.RetireSigningKey) *fsmpb.Result {
	old, _ := a.first(tKey, "id", p.GetKid()).(*fsmpb.SigningKey)
	if old == nil {
		return fail(codeNotFound, "signing key %q not found", p.GetKid())
	}
	if keys := a.view().SigningKeys(); keys[0].GetKid() == old.Kid {
		return fail(codePrecondition, "signing key %q is the one in use: rotate first", old.Kid)
	}
	a.del(tKey, old)
	a.revoked(RevocationSigningKey, old.Kid, "signing key retired")
	return ok()
}

// Target names what a revocation would hit, for BlastRadius.
type Target struct {
	Kind string // RevocationLease, RevocationSubtree, RevocationIdentity, RevocationRole or RevocationOwner
	ID   string
}

// BlastRadius counts the leases valid at now that revoking target would
// invalidate (the dry run of a revocation): a lease and its valid
// descendants; a subtree's valid descendants; an identity's or role's valid
// leases; an owner's identities' valid leases. It reads through indexes and
// visits only unexpired leases of the target, so it costs O(their number).
func (v *View) BlastRadius(t Target, now time.Time) uint64 {
	at := now.UnixNano()
	switch t.Kind {
	case RevocationLease:
		l, ok := v.leases.get(t.ID)
		if !ok || v.check(l, at, MaxLeaseAncestors) != "" {
			return 0
		}
		return 1 + v.validDescendants(l, at)
	case RevocationSubtree:
		l, ok := v.leases.get(t.ID)
		if !ok || v.check(l, at, MaxLeaseAncestors) != "" {
			return 0
		}
		return v.validDescendants(l, at)
	case RevocationIdentity:
		return uint64(v.liveLeases(t.ID, "", at, 0))
	case RevocationRole:
		role, ok := v.Role(t.ID)
		if !ok {
			return 0
		}
		return uint64(v.liveLeases(role.GetIdentity(), t.ID, at, 0))
	case RevocationOwner:
		// Every live lease carries its identity's current owner: moving an
		// identity to another owner bumps its epoch.
		var n uint64
		for _, ident := range v.Identities() {
			if ident.GetOwner() == t.ID {
				n += uint64(v.liveLeases(ident.GetId(), "", at, 0))
			}
		}
		return n
	}
	return 0
}

// validDescendants counts the valid leases below a valid lease, walking the
// parent index breadth first (depth is bounded by MaxLeaseAncestors).
func (v *View) validDescendants(root *leaseRec, now int64) uint64 {
	var n uint64
	level := []*leaseRec{root}
	for depth := 0; len(level) > 0 && depth < MaxLeaseAncestors; depth++ {
		var next []*leaseRec
		for _, p := range level {
			v.leases.children(p.id, func(c *leaseRec) bool {
				// The parent is valid; so the child is iff it is valid on
				// its own and its link to the parent holds.
				if v.linked(c, p) && v.checkOne(c, now) == "" {
					n++
					next = append(next, c)
				}
				return true
			})
		}
		level = next
	}
	return n
}

// Children lists the leases delegated directly from a lease, by id,
// whatever their validity.
func (v *View) Children(id string) []*fsmpb.Lease {
	var out []*fsmpb.Lease
	v.leases.children(id, func(c *leaseRec) bool {
		out = append(out, v.leases.lease(c))
		return true
	})
	return out
}
