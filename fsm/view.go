package fsm

import (
	"math"
	"slices"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// View is an immutable, consistent read view of the state at one applied
// index: a memdb read transaction over immutable trees, so it takes no lock,
// never blocks Apply, and is safe for concurrent use by many goroutines.
// Hold it for one request; a long-lived View pins old records in memory.
//
// Records it returns are shared with the state and with other views: treat
// them as read-only (clone before modifying). Lists are fresh slices.
type View struct {
	txn    *memdb.Txn
	leases *leaseStore
	index  uint64
	// ov: committed revocations above index (overlay.go); nil in the
	// applier's view, and whenever there are none.
	ov *overlay
	// m is the meta record when mSet (views of published state); the
	// applier's view looks it up in its write transaction.
	m    *meta
	mSet bool
}

// Index is the Raft index of the last entry this view reflects.
func (v *View) Index() uint64 { return v.index }

func (v *View) first(table, index string, args ...any) any {
	return firstIn(v.txn, table, index, args...)
}

func firstIn(txn *memdb.Txn, table, index string, args ...any) any {
	raw, err := txn.First(table, index, args...)
	if err != nil {
		return nil // only a malformed query; the schema is fixed
	}
	return raw
}

func collect[T any](it memdb.ResultIterator, err error, limit int) []T {
	if err != nil {
		return nil
	}
	var out []T
	for raw := it.Next(); raw != nil && (limit <= 0 || len(out) < limit); raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out
}

func all[T any](v *View, table string) []T {
	it, err := v.txn.Get(table, "id")
	return collect[T](it, err, 0)
}

func (v *View) meta() *meta {
	if v.mSet {
		return v.m
	}
	m, _ := v.first(tMeta, "id", metaKey).(*meta)
	return m
}

// Bootstrapped reports whether the cluster's Bootstrap entry was applied.
func (v *View) Bootstrapped() bool { return v.meta() != nil }

// ClusterID is the id set by Bootstrap ("" before).
func (v *View) ClusterID() string {
	if m := v.meta(); m != nil {
		return m.ClusterID
	}
	return ""
}

// AdminTokenSHA256 is the SHA-256 of the admin token (nil before Bootstrap).
func (v *View) AdminTokenSHA256() []byte {
	if m := v.meta(); m != nil {
		return m.AdminSHA256
	}
	return nil
}

// HMACKey keys secret-id hashes and audit HMACs (nil before Bootstrap).
func (v *View) HMACKey() []byte {
	if m := v.meta(); m != nil {
		return m.HMACKey
	}
	return nil
}

// Identity looks an identity up by id.
func (v *View) Identity(id string) (*fsmpb.Identity, bool) {
	i, ok := v.first(tIdentity, "id", id).(*fsmpb.Identity)
	return i, ok
}

// Identities lists every identity, sorted by id.
func (v *View) Identities() []*fsmpb.Identity { return all[*fsmpb.Identity](v, tIdentity) }

// Role looks a role up by name.
func (v *View) Role(name string) (*fsmpb.Role, bool) {
	r, ok := v.first(tRole, "id", name).(*fsmpb.Role)
	return r, ok
}

// RoleByRoleID looks a role up by its AppRole role id.
func (v *View) RoleByRoleID(roleID string) (*fsmpb.Role, bool) {
	r, ok := v.first(tRole, iRoleID, roleID).(*fsmpb.Role)
	return r, ok
}

// Roles lists every role, sorted by name.
func (v *View) Roles() []*fsmpb.Role { return all[*fsmpb.Role](v, tRole) }

// SecretIDByHMAC finds a secret id by its keyed hash, the only form in which
// the secret is stored.
func (v *View) SecretIDByHMAC(h []byte) (*fsmpb.SecretID, bool) {
	if len(h) == 0 {
		return nil, false
	}
	s, ok := v.first(tSecret, iHMAC, h).(*fsmpb.SecretID)
	return s, ok
}

// SecretIDByAccessor finds a secret id by its accessor.
func (v *View) SecretIDByAccessor(accessor string) (*fsmpb.SecretID, bool) {
	s, ok := v.first(tSecret, "id", accessor).(*fsmpb.SecretID)
	return s, ok
}

// SecretIDs lists a role's secret ids ("" = every role's), sorted by accessor.
func (v *View) SecretIDs(role string) []*fsmpb.SecretID {
	if role == "" {
		return all[*fsmpb.SecretID](v, tSecret)
	}
	it, err := v.txn.Get(tSecret, iRole, role)
	return collect[*fsmpb.SecretID](it, err, 0)
}

// PolicySet returns the active (latest) version of a policy set.
func (v *View) PolicySet(name string) (*fsmpb.PolicySet, bool) {
	ps, ok := v.first(tPolicy, "id", name).(*fsmpb.PolicySet)
	return ps, ok
}

// PolicySetVersion returns any version ever stored under name, including
// versions of a deleted set.
func (v *View) PolicySetVersion(name string, version uint64) (*fsmpb.PolicySet, bool) {
	ps, ok := v.first(tHistory, "id", name, version).(*fsmpb.PolicySet)
	return ps, ok
}

// PolicySets lists the active policy sets, sorted by name.
func (v *View) PolicySets() []*fsmpb.PolicySet { return all[*fsmpb.PolicySet](v, tPolicy) }

// Lease looks a lease up by id, whatever its validity (see CheckLease). The
// record is made for the caller from the compact stored one; its scope is
// shared: treat it as read-only.
func (v *View) Lease(id string) (*fsmpb.Lease, bool) {
	r, ok := v.leases.get(id)
	if !ok {
		return nil, false
	}
	return v.leases.lease(r), true
}

// LeaseCount is the number of stored leases (live, revoked or expired but
// not yet reaped).
func (v *View) LeaseCount() int { return v.leases.len() }

// Leases lists up to limit leases (limit <= 0: all) of an identity ("" =
// every identity), whatever their validity: all leases by id, one
// identity's by expiry.
func (v *View) Leases(identity string, limit int) []*fsmpb.Lease {
	var out []*fsmpb.Lease
	add := func(r *leaseRec) bool {
		out = append(out, v.leases.lease(r))
		return limit <= 0 || len(out) < limit
	}
	if identity == "" {
		v.leases.byID.Ascend(func(it idItem) bool { return add(it.r) })
		return out
	}
	v.leases.identityFrom(identity, math.MinInt64, add)
	return out
}

// NextExpiry is the earliest expiry of any stored lease (revoked ones
// included), and false when there are none: the reaper's "anything to do?"
// check, O(log n) through the expiry index.
func (v *View) NextExpiry() (time.Time, bool) {
	r, ok := v.leases.earliest()
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, r.expires), true
}

// SigningKeys lists the signing keys, newest first (ties by kid).
func (v *View) SigningKeys() []*fsmpb.SigningKey {
	keys := all[*fsmpb.SigningKey](v, tKey) // sorted by kid
	slices.SortStableFunc(keys, func(a, b *fsmpb.SigningKey) int {
		switch {
		case a.GetCreatedUnixNano() > b.GetCreatedUnixNano():
			return -1
		case a.GetCreatedUnixNano() < b.GetCreatedUnixNano():
			return 1
		}
		return 0
	})
	return keys
}

// SigningKey looks a signing key up by kid.
func (v *View) SigningKey(kid string) (*fsmpb.SigningKey, bool) {
	k, ok := v.first(tKey, "id", kid).(*fsmpb.SigningKey)
	return k, ok
}

// Nodes lists the registered nodes, sorted by id.
func (v *View) Nodes() []*fsmpb.Node { return all[*fsmpb.Node](v, tNode) }

// Node looks a registered node up by id.
func (v *View) Node(id string) (*fsmpb.Node, bool) {
	n, ok := v.first(tNode, "id", id).(*fsmpb.Node)
	return n, ok
}

// Reasons CheckLease gives for an unusable lease.
const (
	ReasonUnknownLease     = "unknown_lease"
	ReasonRevoked          = "revoked"
	ReasonExpired          = "expired"
	ReasonIdentityDeleted  = "identity_deleted"
	ReasonIdentityDisabled = "identity_disabled"
	ReasonIdentityRevoked  = "identity_revoked" // the identity's epoch moved
	ReasonRoleDeleted      = "role_deleted"
	ReasonRoleRevoked      = "role_revoked" // the role's epoch moved
	ReasonParentInvalid    = "parent_invalid"
	ReasonCompleted        = "completed"     // its holder ended it
	ReasonOwnerRevoked     = "owner_revoked" // the owner's epoch moved
)

// CheckLease says whether a lease is usable at now: it returns the lease (nil
// if unknown) and "" when valid, else one of the Reason* codes. Validity is
// decided here, at read time, from the lease's status and expiry, its
// identity's and role's existence, status and epochs, its owner's epoch, and
// the same for every ancestor (at most MaxLeaseAncestors), which is why
// every revocation is a single O(1) entry. The first failing check names the
// reason, in that order.
func (v *View) CheckLease(id string, now time.Time) (*fsmpb.Lease, string) {
	r, ok := v.leases.get(id)
	if !ok {
		return nil, v.unknownLease(id)
	}
	return v.leases.lease(r), v.check(r, now.UnixNano(), MaxLeaseAncestors)
}

// LeaseValid is CheckLease without making the record: the reason alone.
func (v *View) LeaseValid(id string, now time.Time) string {
	r, ok := v.leases.get(id)
	if !ok {
		return v.unknownLease(id)
	}
	return v.check(r, now.UnixNano(), MaxLeaseAncestors)
}

// unknownLease is the reason for a lease id this view does not hold. A
// replica can be pushed a lease's revocation (the overlay) before it has
// applied the lease's issuance, when the lease was issued a moment before
// on another node: it then says revoked (or completed), as it will once it
// has applied both, rather than unknown_lease.
func (v *View) unknownLease(id string) string {
	switch {
	case v.ov == nil:
	case v.ov.in(v.index, RevocationLease, id):
		return ReasonRevoked
	case v.ov.in(v.index, RevocationCompleted, id):
		return ReasonCompleted
	}
	return ReasonUnknownLease
}

// check validates l and at most maxAncestors ancestors; a longer chain is
// invalid.
func (v *View) check(l *leaseRec, now int64, maxAncestors int) string {
	if reason := v.checkOne(l, now); reason != "" {
		return reason
	}
	child := l
	for parent, depth := l.parent, 1; parent != ""; depth++ {
		if depth > maxAncestors {
			return ReasonParentInvalid
		}
		p, ok := v.leases.get(parent)
		// A child carries its parent's delegation epoch: revoking the
		// parent's descendants moves it, and every link below fails.
		if !ok || !v.linked(child, p) || v.checkOne(p, now) != "" {
			return ReasonParentInvalid
		}
		child, parent = p, p.parent
	}
	return ""
}

// linked reports whether child's delegation link to parent p holds: a
// subtree revocation of p (applied, or pending in the overlay: every child
// in a view older than it was delegated before it) breaks it.
func (v *View) linked(child, p *leaseRec) bool {
	if child.parentDelegEpoch != p.delegEpoch {
		return false
	}
	return v.ov == nil || !v.ov.in(v.index, RevocationSubtree, p.id)
}

// OwnerEpoch is the revocation epoch of an owner (0 until RevokeOwner).
func (v *View) OwnerEpoch(owner string) uint64 {
	e, _ := v.first(tOwner, "id", owner).(*fsmpb.OwnerEpoch)
	return e.GetEpoch()
}

// checkOne validates one lease, ignoring its ancestry.
func (v *View) checkOne(l *leaseRec, now int64) string {
	switch fsmpb.LeaseStatus(l.status) {
	case fsmpb.LeaseStatus_LEASE_STATUS_ACTIVE:
	case fsmpb.LeaseStatus_LEASE_STATUS_COMPLETED:
		return ReasonCompleted
	default:
		return ReasonRevoked
	}
	if now >= l.expires {
		return ReasonExpired
	}
	g := l.g
	ident, ok := v.Identity(g.identity)
	switch {
	case !ok:
		return ReasonIdentityDeleted
	case ident.GetStatus() != fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE:
		return ReasonIdentityDisabled
	case ident.GetEpoch() != g.identityEpoch:
		return ReasonIdentityRevoked
	}
	role, ok := v.Role(g.role)
	switch {
	case !ok:
		return ReasonRoleDeleted
	case role.GetEpoch() != g.roleEpoch:
		return ReasonRoleRevoked
	}
	if v.OwnerEpoch(g.owner) != g.ownerEpoch {
		return ReasonOwnerRevoked
	}
	if v.ov != nil {
		return v.ov.reason(v.index, l)
	}
	return ""
}
