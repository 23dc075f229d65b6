package fsm

import (
	"sort"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// View is an immutable, consistent read view of the state at one applied
// index (a memdb read transaction: lock-free, and never blocks Apply).
// Records it returns are shared with the state: treat them as read-only.
type View struct {
	txn   *memdb.Txn
	index uint64
}

// Index is the applied Raft index this view reflects (at least).
func (v *View) Index() uint64 { return v.index }

func (v *View) first(table, index string, args ...any) any {
	raw, err := v.txn.First(table, index, args...)
	if err != nil {
		return nil
	}
	return raw
}

func (v *View) meta() *meta {
	m, _ := v.first(tMeta, "id", metaKeyRow).(*meta)
	return m
}

// Bootstrapped reports whether the cluster's bootstrap entry was applied.
func (v *View) Bootstrapped() bool { return v.meta() != nil }

// ClusterID is set by bootstrap.
func (v *View) ClusterID() string {
	if m := v.meta(); m != nil {
		return m.ClusterID
	}
	return ""
}

// AdminTokenSHA256 is the admin token's hash.
func (v *View) AdminTokenSHA256() []byte {
	if m := v.meta(); m != nil {
		return m.AdminSHA256
	}
	return nil
}

// HMACKey keys secret-id hashes, node tokens and audit HMACs.
func (v *View) HMACKey() []byte {
	if m := v.meta(); m != nil {
		return m.HMACKey
	}
	return nil
}

func all[T any](v *View, table string) []T {
	it, err := v.txn.Get(table, "id")
	if err != nil {
		return nil
	}
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out
}

// Identity looks an identity up by id.
func (v *View) Identity(id string) (*fsmpb.Identity, bool) {
	i, ok := v.first(tIdentity, "id", id).(*fsmpb.Identity)
	return i, ok
}

// Identities lists identities sorted by id.
func (v *View) Identities() []*fsmpb.Identity { return all[*fsmpb.Identity](v, tIdentity) }

// Role looks a role up by name.
func (v *View) Role(name string) (*fsmpb.Role, bool) {
	r, ok := v.first(tRole, "id", name).(*fsmpb.Role)
	return r, ok
}

// RoleByRoleID looks a role up by its AppRole role id.
func (v *View) RoleByRoleID(roleID string) (*fsmpb.Role, bool) {
	if roleID == "" {
		return nil, false
	}
	r, ok := v.first(tRole, "role_id", roleID).(*fsmpb.Role)
	return r, ok
}

// Roles lists roles sorted by name.
func (v *View) Roles() []*fsmpb.Role { return all[*fsmpb.Role](v, tRole) }

// SecretIDByHMAC finds a secret id by its keyed hash.
func (v *View) SecretIDByHMAC(h []byte) (*fsmpb.SecretID, bool) {
	if len(h) == 0 {
		return nil, false
	}
	s, ok := v.first(tSecret, "hmac", h).(*fsmpb.SecretID)
	return s, ok
}

// SecretIDByAccessor finds a secret id by accessor.
func (v *View) SecretIDByAccessor(accessor string) (*fsmpb.SecretID, bool) {
	s, ok := v.first(tSecret, "id", accessor).(*fsmpb.SecretID)
	return s, ok
}

// SecretIDs lists a role's secret ids ("" = all), sorted by accessor.
func (v *View) SecretIDs(role string) []*fsmpb.SecretID {
	if role == "" {
		return all[*fsmpb.SecretID](v, tSecret)
	}
	it, err := v.txn.Get(tSecret, "role", role)
	if err != nil {
		return nil
	}
	var out []*fsmpb.SecretID
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*fsmpb.SecretID))
	}
	return out
}

// PolicySet returns the active version of a policy set.
func (v *View) PolicySet(name string) (*fsmpb.PolicySet, bool) {
	ps, ok := v.first(tPolicy, "id", name).(*fsmpb.PolicySet)
	return ps, ok
}

// PolicySetVersion returns any stored version of a policy set.
func (v *View) PolicySetVersion(name string, version uint64) (*fsmpb.PolicySet, bool) {
	row, ok := v.first(tHistory, "id", historyKey(name, version)).(*historyRow)
	if !ok {
		return nil, false
	}
	return row.PS, true
}

// PolicySets lists the active policy sets sorted by name.
func (v *View) PolicySets() []*fsmpb.PolicySet { return all[*fsmpb.PolicySet](v, tPolicy) }

// Lease looks a lease up by id.
func (v *View) Lease(id string) (*fsmpb.Lease, bool) {
	l, ok := v.first(tLease, "id", id).(*fsmpb.Lease)
	return l, ok
}

// Leases lists up to limit leases of an identity ("" = all), sorted by id.
func (v *View) Leases(identity string, limit int) []*fsmpb.Lease {
	var it memdb.ResultIterator
	var err error
	if identity == "" {
		it, err = v.txn.Get(tLease, "id")
	} else {
		it, err = v.txn.Get(tLease, "identity", identity)
	}
	if err != nil {
		return nil
	}
	var out []*fsmpb.Lease
	for raw := it.Next(); raw != nil && (limit <= 0 || len(out) < limit); raw = it.Next() {
		out = append(out, raw.(*fsmpb.Lease))
	}
	return out
}

// SigningKeys lists signing keys, newest first.
func (v *View) SigningKeys() []*fsmpb.SigningKey {
	keys := all[*fsmpb.SigningKey](v, tKey)
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].GetCreatedUnixNano() > keys[j].GetCreatedUnixNano() })
	return keys
}

// SigningKey looks a signing key up by kid.
func (v *View) SigningKey(kid string) (*fsmpb.SigningKey, bool) {
	k, ok := v.first(tKey, "id", kid).(*fsmpb.SigningKey)
	return k, ok
}

// Nodes lists the registered nodes.
func (v *View) Nodes() []*fsmpb.Node { return all[*fsmpb.Node](v, tNode) }

// Node looks a registered node up by id.
func (v *View) Node(id string) (*fsmpb.Node, bool) {
	n, ok := v.first(tNode, "id", id).(*fsmpb.Node)
	return n, ok
}

// Lease validity reasons returned by CheckLease.
const (
	ReasonUnknownLease     = "unknown_lease"
	ReasonRevoked          = "revoked"
	ReasonExpired          = "expired"
	ReasonIdentityDeleted  = "identity_deleted"
	ReasonIdentityDisabled = "identity_disabled"
	ReasonIdentityRevoked  = "identity_revoked"
	ReasonRoleDeleted      = "role_deleted"
	ReasonRoleRevoked      = "role_revoked"
	ReasonParentInvalid    = "parent_invalid"
)

// CheckLease says whether a lease is usable at now: "" when valid, else a
// reason. Revocations are O(1) entries because validity is decided here, at
// read time: status, expiry, identity and role epochs, and every ancestor.
func (v *View) CheckLease(id string, now time.Time) (*fsmpb.Lease, string) {
	return v.checkLease(id, now.UnixNano(), 0)
}

func (v *View) checkLease(id string, now int64, depth int) (*fsmpb.Lease, string) {
	l, ok := v.Lease(id)
	if !ok {
		return nil, ReasonUnknownLease
	}
	if l.GetStatus() == fsmpb.LeaseStatus_LEASE_STATUS_REVOKED {
		return l, ReasonRevoked
	}
	if now >= l.GetExpiresUnixNano() {
		return l, ReasonExpired
	}
	ident, ok := v.Identity(l.GetIdentity())
	switch {
	case !ok:
		return l, ReasonIdentityDeleted
	case ident.GetEpoch() != l.GetIdentityEpoch():
		if ident.GetStatus() != fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE {
			return l, ReasonIdentityDisabled
		}
		return l, ReasonIdentityRevoked
	case ident.GetStatus() != fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE:
		return l, ReasonIdentityDisabled
	}
	role, ok := v.Role(l.GetRole())
	switch {
	case !ok:
		return l, ReasonRoleDeleted
	case role.GetEpoch() != l.GetRoleEpoch():
		return l, ReasonRoleRevoked
	}
	if p := l.GetParent(); p != "" {
		if depth >= maxParentDepth {
			return l, ReasonParentInvalid
		}
		if _, reason := v.checkLease(p, now, depth+1); reason != "" {
			return l, ReasonParentInvalid
		}
	}
	return l, ""
}

// NextExpiry returns the earliest lease expiry in the state (revoked leases
// included: they stay until they expire), if there is any lease.
func (v *View) NextExpiry() (time.Time, bool) {
	it, err := v.txn.LowerBound(tLease, "expiry", int64(0))
	if err != nil {
		return time.Time{}, false
	}
	raw := it.Next()
	if raw == nil {
		return time.Time{}, false
	}
	return time.Unix(0, raw.(*fsmpb.Lease).GetExpiresUnixNano()), true
}
