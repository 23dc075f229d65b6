package fsm

import (
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// issueLease stores a lease decided by the proposing node. Cedar already ran
// there; Apply re-checks only facts that may have moved since the decision
// (identity and role epochs and status, policy version, parent validity,
// secret id uses, budgets) so that every replica reaches the same verdict.
// It is the hot write path: one map lookup per referenced record, no copy of
// the lease (the decoded command's record is stored), one secret id clone.
func (a *applier) issueLease(p *fsmpb.IssueLease) *fsmpb.Result {
	n := p.GetLease()
	ttl := p.GetTtlNanos()
	switch {
	case !validID(n.GetId()):
		return fail(codeInvalid, "lease id is required (no spaces)")
	case ttl <= 0:
		return fail(codeInvalid, "lease ttl must be positive")
	case a.first(tLease, "id", n.GetId()) != nil:
		return fail(codeExists, "lease %q already exists", n.GetId())
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
	if n.GetParent() != "" {
		// The new lease adds one link to its parent's chain.
		parent, _ := a.first(tLease, "id", n.GetParent()).(*fsmpb.Lease)
		if parent == nil {
			return fail(codePrecondition, "parent lease %q is not valid: %s", n.GetParent(), ReasonUnknownLease)
		}
		if reason := a.view().check(parent, a.now, MaxLeaseAncestors-1); reason != "" {
			return fail(codePrecondition, "parent lease %q is not valid: %s", n.GetParent(), reason)
		}
		expires = min(expires, parent.ExpiresUnixNano)
		maxExpires = min(maxExpires, parent.ExpiresUnixNano)
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
	if limit := role.MaxLiveLeases; limit > 0 && a.liveLeases(role, limit) >= limit {
		return fail(codeExhausted, "role %q already holds its maximum of %d live leases", role.Name, limit)
	}

	if secret != nil {
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
	a.put(tLease, n)
	return &fsmpb.Result{Code: codeOK, Lease: n}
}

// liveLeases counts the role's valid leases, up to limit. It walks the
// (role, expiry) index from now on, so expired leases cost nothing; revoked
// or epoch-invalidated ones that have not expired yet are skipped.
func (a *applier) liveLeases(role *fsmpb.Role, limit uint32) uint32 {
	it, err := a.txn.LowerBound(tLease, iRoleExpiry, role.Name, addNanos(a.now, 1))
	if err != nil {
		panic(err)
	}
	v := a.view()
	var count uint32
	for raw := it.Next(); raw != nil && count < limit; raw = it.Next() {
		l := raw.(*fsmpb.Lease)
		if l.Role != role.Name {
			break
		}
		if v.check(l, a.now, MaxLeaseAncestors) == "" {
			count++
		}
	}
	return count
}

func (a *applier) renewLease(p *fsmpb.RenewLease) *fsmpb.Result {
	ttl := p.GetTtlNanos()
	if ttl <= 0 {
		return fail(codeInvalid, "renewal ttl must be positive")
	}
	old, _ := a.first(tLease, "id", p.GetLeaseId()).(*fsmpb.Lease)
	if old == nil {
		return fail(codePrecondition, "lease %q cannot be renewed: %s", p.GetLeaseId(), ReasonUnknownLease)
	}
	if reason := a.view().check(old, a.now, MaxLeaseAncestors); reason != "" {
		return fail(codePrecondition, "lease %q cannot be renewed: %s", p.GetLeaseId(), reason)
	}
	if ps, _ := a.first(tPolicy, "id", p.GetPolicySet()).(*fsmpb.PolicySet); ps == nil || ps.Version != p.GetPolicyVersion() {
		return fail(codePolicy, "policy set %q is no longer at version %d: decide again", p.GetPolicySet(), p.GetPolicyVersion())
	}
	role := a.first(tRole, "id", old.Role).(*fsmpb.Role) // check passed: it exists
	if old.Renewals >= role.MaxRenewals {
		return fail(codeExhausted, "lease %q has used all %d renewals role %q allows", old.Id, role.MaxRenewals, role.Name)
	}
	n := proto.Clone(old).(*fsmpb.Lease)
	n.ExpiresUnixNano = min(addNanos(a.now, ttl), old.MaxExpiresUnixNano)
	n.Renewals++
	n.PolicySet, n.PolicyVersion = p.GetPolicySet(), p.GetPolicyVersion()
	a.put(tLease, n)
	return &fsmpb.Result{Code: codeOK, Lease: n}
}

// revokeLease marks a lease revoked (idempotently). The record stays until
// it expires so that Verify can say "revoked", and every descendant fails
// CheckLease through its ancestry: one entry revokes a whole subtree.
func (a *applier) revokeLease(p *fsmpb.RevokeLease) *fsmpb.Result {
	old, _ := a.first(tLease, "id", p.GetLeaseId()).(*fsmpb.Lease)
	if old == nil {
		return fail(codeNotFound, "lease %q not found", p.GetLeaseId())
	}
	if old.Status == fsmpb.LeaseStatus_LEASE_STATUS_REVOKED {
		return &fsmpb.Result{Code: codeOK, Lease: old}
	}
	n := proto.Clone(old).(*fsmpb.Lease)
	n.Status = fsmpb.LeaseStatus_LEASE_STATUS_REVOKED
	n.RevokeReason = p.GetReason()
	a.put(tLease, n)
	return &fsmpb.Result{Code: codeOK, Lease: n}
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
	it, err := a.txn.LowerBound(tLease, iExpiry, int64(math.MinInt64))
	if err != nil {
		panic(err)
	}
	var gone []any
	for raw := it.Next(); raw != nil && len(gone) < limit; raw = it.Next() {
		if raw.(*fsmpb.Lease).ExpiresUnixNano >= before {
			break
		}
		gone = append(gone, raw)
	}
	for _, l := range gone {
		a.del(tLease, l)
	}
	return &fsmpb.Result{Code: codeOK, Count: uint64(len(gone))}
}
