package fsm

import (
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// issueLease stores a lease decided by the proposing node. Cedar already ran
// there; Apply re-checks only facts that may have moved since the decision
// (identity and role epochs and status, policy version, parent validity,
// secret id uses, budgets) so that every replica reaches the same verdict.
// It is the hot write path: one lookup per referenced record, one compact
// record and its index entries, one secret id clone.
//
// A lease id already stored is a replay when the stored lease was issued by
// the same request id (its result is the stored lease, at its original
// index, and nothing changes) and a conflict otherwise. Issuance is
// deduplicated this way instead of through the applied-request rows, which
// would cost a row entry and an index key per lease for ten minutes.
func (a *applier) issueLease(p *fsmpb.IssueLease, rid string) *fsmpb.Result {
	n := p.GetLease()
	ttl := p.GetTtlNanos()
	if old, ok := a.ls.get(n.GetId()); ok {
		if rid != "" && old.reqHash == requestHash(rid) {
			return &fsmpb.Result{Code: codeOK, Lease: a.ls.lease(old), Index: old.index}
		}
		return fail(codeExists, "lease %q already exists", n.GetId())
	}
	switch {
	case !validID(n.GetId()):
		return fail(codeInvalid, "lease id is required (no spaces)")
	case ttl <= 0:
		return fail(codeInvalid, "lease ttl must be positive")
	}

	ident, _ := a.first(tIdentity, "id", n.GetIdentity()).(*fsmpb.Identity)
	switch {
	case ident == nil:
		return fail(codePrecondition, "identity %q does not exist", n.GetIdentity())
	case ident.Status != fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE:
		return fail(codePrecondition, "identity %q is disabled", n.GetIdentity())
	case ident.Epoch != n.GetIdentityEpoch():
		return fail(codePrecondition, "identity %q was revoked after the decision (epoch %d, decided under %d)", n.GetIdentity(), ident.Epoch, n.GetIdentityEpoch())
	}
	role, _ := a.first(tRole, "id", n.GetRole()).(*fsmpb.Role)
	switch {
	case role == nil:
		return fail(codePrecondition, "role %q does not exist", n.GetRole())
	case role.Epoch != n.GetRoleEpoch():
		return fail(codePrecondition, "role %q was revoked or rebound after the decision (epoch %d, decided under %d)", n.GetRole(), role.Epoch, n.GetRoleEpoch())
	case !roleIssuesTo(role, n.GetIdentity()):
		return fail(codePrecondition, "role %q does not issue to identity %q", n.GetRole(), n.GetIdentity())
	case role.Environment != ident.Environment:
		return fail(codePrecondition, "role %q is for environment %q, identity %q is in %q", n.GetRole(), role.Environment, ident.Id, ident.Environment)
	}
	if ps, _ := a.first(tPolicy, "id", n.GetPolicySet()).(*fsmpb.PolicySet); ps == nil || ps.Version != n.GetPolicyVersion() {
		return fail(codePolicy, "policy set %q is no longer at version %d: decide again", n.GetPolicySet(), n.GetPolicyVersion())
	}
	if ttl > role.MaxTtlNanos {
		return fail(codePrecondition, "lease ttl exceeds role %q's max ttl", role.Name)
	}

	expires := addNanos(a.now, ttl)
	maxExpires := addNanos(a.now, role.MaxTtlNanos)
	var parent *leaseRec
	if n.GetParent() != "" {
		// The new lease adds one link to its parent's chain.
		parent, _ = a.ls.get(n.GetParent())
		if r := a.checkDelegation(n, parent, role); r != nil {
			return r
		}
		expires = min(expires, parent.expires)
		maxExpires = min(maxExpires, parent.expires)
	}

	var secret *fsmpb.SecretID
	if acc := p.GetConsumeSecretAccessor(); acc != "" {
		secret, _ = a.first(tSecret, "id", acc).(*fsmpb.SecretID)
		switch {
		case secret == nil || secret.Role != n.GetRole():
			return fail(codeDenied, "secret id is not valid for role %q", n.GetRole())
		case secret.ExpiresUnixNano != 0 && a.now >= secret.ExpiresUnixNano:
			return fail(codeDenied, "secret id has expired")
		case secret.NumUses > 0 && secret.Uses >= secret.NumUses:
			return fail(codeDenied, "secret id has no uses left")
		}
	}
	if limit := role.MaxLiveLeases; limit > 0 && a.view().liveLeases(ident.Id, role.Name, a.now, limit) >= limit {
		return fail(codeExhausted, "role %q already holds its maximum of %d live leases", role.Name, limit)
	}
	if limit := ident.MaxLiveLeases; limit > 0 && a.view().liveLeases(ident.Id, "", a.now, limit) >= limit {
		return fail(codeExhausted, "identity %q already holds its maximum of %d live leases", ident.Id, limit)
	}

	// An unlimited secret id is counted only for replicas older than FSM
	// version 3; not counting it spares every issuance a clone and a
	// rewrite of the secret's record on every replica.
	if secret != nil && !(secret.NumUses == 0 && p.GetSkipUnlimitedUseCount()) {
		s := proto.Clone(secret).(*fsmpb.SecretID)
		s.Uses++
		a.put(tSecret, s)
	}
	// Apply owns these fields: never trust the proposer with them.
	n.Owner = ident.Owner
	n.Environment = ident.Environment
	n.IssuedUnixNano = a.now
	n.ExpiresUnixNano = expires
	n.MaxExpiresUnixNano = maxExpires
	n.Renewals = 0
	n.Status = fsmpb.LeaseStatus_LEASE_STATUS_ACTIVE
	n.IssuedIndex = a.index
	n.RevokeReason = ""
	n.OwnerEpoch = a.view().OwnerEpoch(ident.Owner)
	n.DelegationEpoch, n.ParentDelegationEpoch, n.Depth = 0, 0, 0
	if parent != nil {
		n.ParentDelegationEpoch, n.Depth = uint64(parent.delegEpoch), uint32(parent.depth)+1
	}
	n.RequestHash = 0
	if rid != "" {
		n.RequestHash = requestHash(rid)
	}
	r := a.ls.record(n)
	a.ls.insert(r)
	return &fsmpb.Result{Code: codeOK, Lease: n}
}

// checkDelegation validates a child lease against its parent: the parent
// is valid (with room for one more link), the child belongs to the same
// identity and role, its scope lies within the parent's, and the chain stays
// within the role's delegation depth.
func (a *applier) checkDelegation(n *fsmpb.Lease, parent *leaseRec, role *fsmpb.Role) *fsmpb.Result {
	if parent == nil {
		return fail(codePrecondition, "parent lease %q is not valid: %s", n.GetParent(), ReasonUnknownLease)
	}
	if reason := a.view().check(parent, a.now, MaxLeaseAncestors-1); reason != "" {
		return fail(codePrecondition, "parent lease %q is not valid: %s", n.GetParent(), reason)
	}
	switch depth := uint32(parent.depth) + 1; {
	case parent.g.identity != n.GetIdentity() || parent.g.role != n.GetRole():
		return fail(codeDenied, "a child lease must belong to its parent's identity and role")
	case depth > role.MaxDelegationDepth || depth > MaxLeaseAncestors:
		return fail(codeDenied, "delegation depth %d exceeds role %q's limit of %d", depth, role.Name, min(role.MaxDelegationDepth, MaxLeaseAncestors))
	case !ScopeWithin(n.GetScope(), parent.g.scope):
		return fail(codeDenied, "a child lease's scope must lie within its parent's")
	}
	return nil
}

// ScopeWithin reports whether every action and resource (type and id) of
// child is also in parent, and child names at least one of each.
func ScopeWithin(child, parent *fsmpb.Scope) bool {
	if len(child.GetActions()) == 0 || len(child.GetResources()) == 0 {
		return false
	}
	for _, a := range child.GetActions() {
		if !slices.Contains(parent.GetActions(), a) {
			return false
		}
	}
	for _, r := range child.GetResources() {
		if !slices.ContainsFunc(parent.GetResources(), func(p *fsmpb.Resource) bool {
			return p.GetType() == r.GetType() && p.GetId() == r.GetId()
		}) {
			return false
		}
	}
	return true
}

// liveLeases counts the valid leases of an identity at now, only those
// issued through role unless role is "", up to limit (0: no limit). A valid
// lease's role is still bound to its identity (rebinding bumps the role's
// epoch), so a role's live leases are all among its identity's: one
// (identity, expiry) index serves both budgets. It walks that index from
// now on, so expired leases cost nothing; revoked or invalidated ones that
// have not expired yet are skipped.
func (v *View) liveLeases(identity, role string, now int64, limit uint32) uint32 {
	var count uint32
	v.leases.identityFrom(identity, addNanos(now, 1), func(r *leaseRec) bool {
		if (role == "" || r.g.role == role) && v.check(r, now, MaxLeaseAncestors) == "" {
			count++
		}
		return limit == 0 || count < limit
	})
	return count
}

func (a *applier) renewLease(p *fsmpb.RenewLease) *fsmpb.Result {
	ttl := p.GetTtlNanos()
	if ttl <= 0 {
		return fail(codeInvalid, "renewal ttl must be positive")
	}
	old, _ := a.ls.get(p.GetLeaseId())
	if old == nil {
		return fail(codePrecondition, "lease %q cannot be renewed: %s", p.GetLeaseId(), ReasonUnknownLease)
	}
	if reason := a.view().check(old, a.now, MaxLeaseAncestors); reason != "" {
		return fail(codePrecondition, "lease %q cannot be renewed: %s", p.GetLeaseId(), reason)
	}
	if ps, _ := a.first(tPolicy, "id", p.GetPolicySet()).(*fsmpb.PolicySet); ps == nil || ps.Version != p.GetPolicyVersion() {
		return fail(codePolicy, "policy set %q is no longer at version %d: decide again", p.GetPolicySet(), p.GetPolicyVersion())
	}
	role := a.first(tRole, "id", old.g.role).(*fsmpb.Role) // check passed: it exists
	if old.renewals >= role.MaxRenewals {
		return fail(codeExhausted, "lease %q has used all %d renewals role %q allows", old.id, role.MaxRenewals, role.Name)
	}
	l := a.ls.lease(old)
	l.ExpiresUnixNano = min(addNanos(a.now, ttl), old.maxExpires)
	if parent, ok := a.ls.get(old.parent); ok {
		// A child never outlives its parent, even one renewed since.
		l.ExpiresUnixNano = min(l.ExpiresUnixNano, parent.expires)
	}
	l.Renewals++
	l.PolicySet, l.PolicyVersion = p.GetPolicySet(), p.GetPolicyVersion()
	a.ls.replace(old, a.ls.record(l))
	return &fsmpb.Result{Code: codeOK, Lease: l}
}

// revokeLease marks a lease revoked or completed (idempotently). The record
// stays until it expires so that Verify can say why, and every descendant
// fails CheckLease through its ancestry: one entry revokes a whole subtree.
// With descendants_only the lease stays valid and its delegation epoch
// moves, which invalidates every descendant (one small entry, whatever
// their number).
func (a *applier) revokeLease(p *fsmpb.RevokeLease) *fsmpb.Result {
	old, _ := a.ls.get(p.GetLeaseId())
	if old == nil {
		return fail(codeNotFound, "lease %q not found", p.GetLeaseId())
	}
	if p.GetDescendantsOnly() {
		if p.GetCompleted() {
			return fail(codeInvalid, "descendants_only and completed do not combine")
		}
		n := *old
		n.delegEpoch++
		a.ls.replace(old, &n)
		a.revoked(RevocationSubtree, n.id, p.GetReason())
		return &fsmpb.Result{Code: codeOK, Lease: a.ls.lease(&n)}
	}
	if fsmpb.LeaseStatus(old.status) != fsmpb.LeaseStatus_LEASE_STATUS_ACTIVE {
		return &fsmpb.Result{Code: codeOK, Lease: a.ls.lease(old)}
	}
	n := *old
	n.status = uint8(fsmpb.LeaseStatus_LEASE_STATUS_REVOKED)
	kind := RevocationLease
	if p.GetCompleted() {
		n.status, kind = uint8(fsmpb.LeaseStatus_LEASE_STATUS_COMPLETED), RevocationCompleted
	}
	a.ls.replace(old, &n)
	a.ls.setReason(n.id, p.GetReason())
	a.revoked(kind, n.id, p.GetReason())
	return &fsmpb.Result{Code: codeOK, Lease: a.ls.lease(&n)}
}

// reapExpired deletes up to limit leases that expired before the given time,
// oldest first, walking the expiry index: O(leases reaped). The time is
// capped at the entry's own: a lease still valid when the entry was proposed
// is never reaped, whatever the command says.
func (a *applier) reapExpired(p *fsmpb.ReapExpired) *fsmpb.Result {
	limit := int(p.GetLimit())
	if limit == 0 {
		limit = DefaultReapLimit
	}
	before := min(p.GetBeforeUnixNano(), a.now)
	var gone []*leaseRec
	a.ls.byExpiry.Ascend(func(r *leaseRec) bool {
		if r.expires >= before || len(gone) >= limit {
			return false
		}
		gone = append(gone, r)
		return true
	})
	for _, r := range gone {
		a.ls.delete(r)
	}
	return &fsmpb.Result{Code: codeOK, Count: uint64(len(gone))}
}
