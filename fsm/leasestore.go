package fsm

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/google/btree"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Leases are the one table that grows with traffic (a million live leases
// on a busy node), so they do not live in memdb: a memdb index entry costs
// about 350 bytes (an immutable radix leaf, its node and two watch
// channels), and leases had five indexes. The lease store keeps compact
// records in copy-on-write B-trees (google/btree, the ordered index etcd
// uses) whose entries cost one pointer or one (id, pointer) pair, and shares
// everything leases have in common (identity, role, owner, environment,
// epochs, policy version, auth method, scope) through an interned grant. A
// Clone is O(1) and later writes copy only the nodes they touch, which gives
// views and snapshots the same isolation memdb gave. DESIGN.md has the
// numbers.

// btreeDegree: 64 items per leaf at most; shallow trees, few node copies.
const btreeDegree = 32

// grant is what many leases share. Immutable once made, except refs, which
// only the writer touches (readers never read it).
type grant struct {
	identity, role, owner, environment, policySet, authMethod string
	identityEpoch, roleEpoch, ownerEpoch, policyVersion       uint64
	scope                                                     *fsmpb.Scope // read-only, shared

	key  string // its key in the grant table
	refs int    // leases referring to it (writer only)
}

// leaseRec is one lease. Immutable once stored: a change makes a copy.
// Laid out to fit Go's 112-byte size class (a revocation reason, rare, lives
// in its own index).
type leaseRec struct {
	id, parent, decision         string
	g                            *grant
	issued, expires, maxExpires  int64
	index                        uint64 // Raft index of the issuing entry
	reqHash                      uint64 // SHA-256(request id)[:8]: replay or conflict
	delegEpoch, parentDelegEpoch uint32
	renewals                     uint32
	status                       uint8 // fsmpb.LeaseStatus (1, 2, 50)
	depth                        uint8
}

type idItem struct {
	id string
	r  *leaseRec
}

type reasonItem struct{ id, reason string }

// leaseStore is the lease table and its indexes. A store is either the
// writer's (mutated by Apply) or a clone published to readers (never
// mutated). Concurrency: the writer's store belongs to the Apply goroutine;
// a published clone is safe for concurrent readers.
type leaseStore struct {
	byID     *btree.BTreeG[idItem]
	byExpiry *btree.BTreeG[*leaseRec]  // (expires, id): the reaper
	byIdent  *btree.BTreeG[*leaseRec]  // (identity, expires, id): listing, budgets (identity and role)
	byParent *btree.BTreeG[*leaseRec]  // (parent, id), delegated leases only: subtrees
	reasons  *btree.BTreeG[reasonItem] // revocation reasons, by lease id
	grants   map[string]*grant         // writer only; shared by the writer's clones
}

func newLeaseStore() *leaseStore {
	fl := func() *btree.FreeListG[*leaseRec] { return btree.NewFreeListG[*leaseRec](0) }
	return &leaseStore{
		byID: btree.NewWithFreeListG(btreeDegree, func(a, b idItem) bool { return a.id < b.id }, btree.NewFreeListG[idItem](0)),
		byExpiry: btree.NewWithFreeListG(btreeDegree, func(a, b *leaseRec) bool {
			return cmp.Or(cmp.Compare(a.expires, b.expires), strings.Compare(a.id, b.id)) < 0
		}, fl()),
		byIdent: btree.NewWithFreeListG(btreeDegree, func(a, b *leaseRec) bool {
			return cmp.Or(strings.Compare(a.g.identity, b.g.identity), cmp.Compare(a.expires, b.expires), strings.Compare(a.id, b.id)) < 0
		}, fl()),
		byParent: btree.NewWithFreeListG(btreeDegree, func(a, b *leaseRec) bool {
			return cmp.Or(strings.Compare(a.parent, b.parent), strings.Compare(a.id, b.id)) < 0
		}, fl()),
		reasons: btree.NewWithFreeListG(btreeDegree, func(a, b reasonItem) bool { return a.id < b.id }, btree.NewFreeListG[reasonItem](0)),
		grants:  make(map[string]*grant),
	}
}

// clone is O(1): both stores share the trees until one writes. Clone only
// the writer's store (cloning marks its trees, a write to its header).
func (s *leaseStore) clone() *leaseStore {
	return &leaseStore{
		byID: s.byID.Clone(), byExpiry: s.byExpiry.Clone(), byIdent: s.byIdent.Clone(),
		byParent: s.byParent.Clone(), reasons: s.reasons.Clone(), grants: s.grants,
	}
}

func (s *leaseStore) len() int { return s.byID.Len() }

func (s *leaseStore) get(id string) (*leaseRec, bool) {
	it, ok := s.byID.Get(idItem{id: id})
	return it.r, ok
}

// intern returns the grant for a lease's shared fields, making it if new.
func (s *leaseStore) intern(l *fsmpb.Lease) *grant {
	var b strings.Builder
	for _, f := range []string{l.GetIdentity(), l.GetRole(), l.GetOwner(), l.GetEnvironment(), l.GetPolicySet(), l.GetAuthMethod()} {
		b.WriteString(f)
		b.WriteByte(0)
	}
	for _, n := range []uint64{l.GetIdentityEpoch(), l.GetRoleEpoch(), l.GetOwnerEpoch(), l.GetPolicyVersion()} {
		b.WriteString(strconv.FormatUint(n, 36))
		b.WriteByte(0)
	}
	scope, err := encodeOpts.Marshal(l.GetScope())
	if err != nil {
		panic("fsm: encode scope: " + err.Error()) // a decoded message always re-encodes
	}
	b.Write(scope)
	key := b.String()
	if g, ok := s.grants[key]; ok {
		return g
	}
	g := &grant{
		identity: l.GetIdentity(), role: l.GetRole(), owner: l.GetOwner(), environment: l.GetEnvironment(),
		policySet: l.GetPolicySet(), authMethod: l.GetAuthMethod(),
		identityEpoch: l.GetIdentityEpoch(), roleEpoch: l.GetRoleEpoch(), ownerEpoch: l.GetOwnerEpoch(), policyVersion: l.GetPolicyVersion(),
		scope: l.GetScope(), key: key,
	}
	if g.scope == nil {
		g.scope = &fsmpb.Scope{}
	}
	s.grants[key] = g
	return g
}

// record makes the compact record of a lease (interning its grant); the
// revoke reason is stored by setReason.
func (s *leaseStore) record(l *fsmpb.Lease) *leaseRec {
	return &leaseRec{
		id: l.GetId(), parent: l.GetParent(), decision: l.GetDecisionId(),
		g:      s.intern(l),
		issued: l.GetIssuedUnixNano(), expires: l.GetExpiresUnixNano(), maxExpires: l.GetMaxExpiresUnixNano(),
		index: l.GetIssuedIndex(), reqHash: l.GetRequestHash(),
		delegEpoch: uint32(l.GetDelegationEpoch()), parentDelegEpoch: uint32(l.GetParentDelegationEpoch()),
		renewals: l.GetRenewals(), status: uint8(l.GetStatus()), depth: uint8(l.GetDepth()),
	}
}

// lease materialises a record. The scope is shared: treat it as read-only.
func (s *leaseStore) lease(r *leaseRec) *fsmpb.Lease {
	l := &fsmpb.Lease{}
	s.fill(r, l)
	return l
}

func (s *leaseStore) fill(r *leaseRec, l *fsmpb.Lease) {
	g := r.g
	*l = fsmpb.Lease{
		Id: r.id, Identity: g.identity, IdentityEpoch: g.identityEpoch, Role: g.role, RoleEpoch: g.roleEpoch,
		Owner: g.owner, Environment: g.environment, Scope: g.scope,
		IssuedUnixNano: r.issued, ExpiresUnixNano: r.expires, MaxExpiresUnixNano: r.maxExpires,
		Renewals: r.renewals, Parent: r.parent, DecisionId: r.decision, PolicySet: g.policySet, PolicyVersion: g.policyVersion,
		Status: fsmpb.LeaseStatus(r.status), IssuedIndex: r.index, RevokeReason: s.reason(r), AuthMethod: g.authMethod,
		OwnerEpoch: g.ownerEpoch, DelegationEpoch: uint64(r.delegEpoch), ParentDelegationEpoch: uint64(r.parentDelegEpoch),
		Depth: uint32(r.depth), RequestHash: r.reqHash,
	}
}

// insert stores a record whose id is not stored yet.
func (s *leaseStore) insert(r *leaseRec) {
	s.byID.ReplaceOrInsert(idItem{id: r.id, r: r})
	s.byExpiry.ReplaceOrInsert(r)
	s.byIdent.ReplaceOrInsert(r)
	if r.parent != "" {
		s.byParent.ReplaceOrInsert(r)
	}
	r.g.refs++
}

// reason is a revoked lease's revocation reason ("" for an active one).
func (s *leaseStore) reason(r *leaseRec) string {
	if fsmpb.LeaseStatus(r.status) == fsmpb.LeaseStatus_LEASE_STATUS_ACTIVE {
		return ""
	}
	it, _ := s.reasons.Get(reasonItem{id: r.id})
	return it.reason
}

func (s *leaseStore) setReason(id, reason string) {
	if reason != "" {
		s.reasons.ReplaceOrInsert(reasonItem{id: id, reason: reason})
	}
}

// replace swaps a stored record for its changed copy (same id and parent).
func (s *leaseStore) replace(old, r *leaseRec) {
	s.byID.ReplaceOrInsert(idItem{id: r.id, r: r})
	if old.expires != r.expires {
		s.byExpiry.Delete(old)
		s.byIdent.Delete(old)
	}
	s.byExpiry.ReplaceOrInsert(r)
	s.byIdent.ReplaceOrInsert(r)
	if r.parent != "" {
		s.byParent.ReplaceOrInsert(r)
	}
	if old.g != r.g {
		r.g.refs++
		s.release(old.g)
	}
}

func (s *leaseStore) delete(r *leaseRec) {
	s.byID.Delete(idItem{id: r.id})
	s.byExpiry.Delete(r)
	s.byIdent.Delete(r)
	if r.parent != "" {
		s.byParent.Delete(r)
	}
	if fsmpb.LeaseStatus(r.status) != fsmpb.LeaseStatus_LEASE_STATUS_ACTIVE {
		s.reasons.Delete(reasonItem{id: r.id})
	}
	s.release(r.g)
}

// release drops a reference; an unreferenced grant leaves the table, so
// churn through epochs and policy versions leaves nothing behind.
func (s *leaseStore) release(g *grant) {
	if g.refs--; g.refs <= 0 {
		delete(s.grants, g.key)
	}
}

// identityFrom walks an identity's leases by expiry from `from` on.
func (s *leaseStore) identityFrom(identity string, from int64, fn func(*leaseRec) bool) {
	s.byIdent.AscendGreaterOrEqual(&leaseRec{g: &grant{identity: identity}, expires: from}, func(r *leaseRec) bool {
		return r.g.identity == identity && fn(r)
	})
}

// maxEpochs is the highest identity epoch any stored lease of identity
// carries, and the highest role epoch of role ("" skips either), through
// the grants: every stored lease holds one. The result does not depend on
// the map's order, so Apply may use it.
func (s *leaseStore) maxEpochs(identity, role string) (identityEpoch, roleEpoch uint64) {
	for _, g := range s.grants {
		if identity != "" && g.identity == identity {
			identityEpoch = max(identityEpoch, g.identityEpoch)
		}
		if role != "" && g.role == role {
			roleEpoch = max(roleEpoch, g.roleEpoch)
		}
	}
	return identityEpoch, roleEpoch
}

// children walks the leases delegated directly from id, by id.
func (s *leaseStore) children(id string, fn func(*leaseRec) bool) {
	s.byParent.AscendGreaterOrEqual(&leaseRec{parent: id}, func(r *leaseRec) bool {
		return r.parent == id && fn(r)
	})
}

// earliest is the record with the earliest expiry.
func (s *leaseStore) earliest() (*leaseRec, bool) { return s.byExpiry.Min() }

// requestHash names a request id in a lease record.
func requestHash(rid string) uint64 {
	sum := sha256.Sum256([]byte(rid))
	return binary.BigEndian.Uint64(sum[:8])
}
