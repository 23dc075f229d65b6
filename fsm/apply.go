package fsm

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Dedupe window: request ids are remembered this long (by entry time).
const (
	dedupeWindow   = 10 * time.Minute
	prunePerApply  = 256
	defaultReapMax = 10000
	maxParentDepth = 16
)

var validKinds = map[string]bool{"workload": true, "ci_job": true, "agent": true, "service_account": true}
var validMethods = map[string]bool{"approle": true, "jwt": true, "mtls": true}

type policyEvent struct {
	ps      *fsmpb.PolicySet
	deleted bool
}

// applier applies one entry inside one memdb write transaction.
type applier struct {
	f            *FSM
	txn          *memdb.Txn
	index        uint64
	now          int64
	policyEvents []policyEvent
}

func res(code fsmpb.ResultCode, format string, args ...any) *fsmpb.Result {
	return &fsmpb.Result{Code: code, Message: fmt.Sprintf(format, args...)}
}

func ok() *fsmpb.Result { return &fsmpb.Result{Code: fsmpb.ResultCode_RESULT_CODE_OK} }

const (
	codeNotFound     = fsmpb.ResultCode_RESULT_CODE_NOT_FOUND
	codeExists       = fsmpb.ResultCode_RESULT_CODE_ALREADY_EXISTS
	codePrecondition = fsmpb.ResultCode_RESULT_CODE_FAILED_PRECONDITION
	codeExhausted    = fsmpb.ResultCode_RESULT_CODE_RESOURCE_EXHAUSTED
	codeInvalid      = fsmpb.ResultCode_RESULT_CODE_INVALID_ARGUMENT
	codeDenied       = fsmpb.ResultCode_RESULT_CODE_PERMISSION_DENIED
	codeAborted      = fsmpb.ResultCode_RESULT_CODE_ABORTED
	codePolicy       = fsmpb.ResultCode_RESULT_CODE_POLICY_CHANGED
)

func (a *applier) get(table string, id any) any {
	raw, err := a.txn.First(table, "id", id)
	if err != nil {
		panic(fmt.Sprintf("fsm: read %s: %v", table, err))
	}
	return raw
}

func (a *applier) put(table string, obj any) {
	if err := a.txn.Insert(table, obj); err != nil {
		panic(fmt.Sprintf("fsm: write %s: %v", table, err))
	}
}

func (a *applier) del(table string, obj any) {
	if err := a.txn.Delete(table, obj); err != nil {
		panic(fmt.Sprintf("fsm: delete %s: %v", table, err))
	}
}

// applyDeduped applies one command unless its request id was applied successfully before,
// in which case the stored result is returned and nothing changes.
func (a *applier) applyDeduped(cmd *fsmpb.Command) *fsmpb.Result {
	rid := cmd.GetHeader().GetRequestId()
	if rid != "" {
		if row, _ := a.get(tApplied, rid).(*appliedRow); row != nil {
			return row.Result
		}
	}
	r := a.apply(cmd)
	r.Index = a.index
	// Only successes are remembered: a failed command changed nothing, and a
	// retry with the same id (say after POLICY_CHANGED) must be evaluated again.
	if rid != "" && r.GetCode() == fsmpb.ResultCode_RESULT_CODE_OK {
		a.put(tApplied, &appliedRow{RequestID: rid, Time: a.now, Result: r})
	}
	return r
}

// prune forgets request ids older than the dedupe window (bounded work).
func (a *applier) prune() {
	cutoff := a.now - int64(dedupeWindow)
	it, err := a.txn.LowerBound(tApplied, "time", int64(0))
	if err != nil {
		panic(err)
	}
	var old []*appliedRow
	for raw := it.Next(); raw != nil && len(old) < prunePerApply; raw = it.Next() {
		row := raw.(*appliedRow)
		if row.Time >= cutoff {
			break
		}
		old = append(old, row)
	}
	for _, row := range old {
		a.del(tApplied, row)
	}
}

func (a *applier) apply(cmd *fsmpb.Command) *fsmpb.Result {
	switch p := cmd.GetPayload().(type) {
	case *fsmpb.Command_Batch:
		return res(codeInvalid, "nested batch")
	case *fsmpb.Command_Noop:
		return ok()
	case *fsmpb.Command_Bootstrap:
		return a.bootstrap(p.Bootstrap)
	case *fsmpb.Command_RegisterNode:
		if p.RegisterNode.GetNode().GetId() == "" {
			return res(codeInvalid, "node id is required")
		}
		a.put(tNode, p.RegisterNode.GetNode())
		return ok()
	case *fsmpb.Command_RemoveNode:
		if n := a.get(tNode, p.RemoveNode.GetNodeId()); n != nil {
			a.del(tNode, n)
		}
		return ok()
	case *fsmpb.Command_PutIdentity:
		return a.putIdentity(p.PutIdentity)
	case *fsmpb.Command_DeleteIdentity:
		old := a.get(tIdentity, p.DeleteIdentity.GetId())
		if old == nil {
			return res(codeNotFound, "identity %q not found", p.DeleteIdentity.GetId())
		}
		a.del(tIdentity, old)
		return ok()
	case *fsmpb.Command_PutRole:
		return a.putRole(p.PutRole)
	case *fsmpb.Command_DeleteRole:
		old := a.get(tRole, p.DeleteRole.GetName())
		if old == nil {
			return res(codeNotFound, "role %q not found", p.DeleteRole.GetName())
		}
		a.del(tRole, old)
		return ok()
	case *fsmpb.Command_CreateSecretId:
		return a.createSecretID(p.CreateSecretId)
	case *fsmpb.Command_RevokeSecretId:
		old := a.get(tSecret, p.RevokeSecretId.GetAccessor())
		if old == nil {
			return res(codeNotFound, "secret id accessor %q not found", p.RevokeSecretId.GetAccessor())
		}
		a.del(tSecret, old)
		return ok()
	case *fsmpb.Command_PutPolicySet:
		return a.putPolicySet(p.PutPolicySet)
	case *fsmpb.Command_DeletePolicySet:
		old, _ := a.get(tPolicy, p.DeletePolicySet.GetName()).(*fsmpb.PolicySet)
		if old == nil {
			return res(codeNotFound, "policy set %q not found", p.DeletePolicySet.GetName())
		}
		a.del(tPolicy, old)
		a.policyEvents = append(a.policyEvents, policyEvent{ps: old, deleted: true})
		return ok()
	case *fsmpb.Command_PutSigningKey:
		k := p.PutSigningKey.GetKey()
		if k.GetKid() == "" || len(k.GetEd25519Seed()) != 32 {
			return res(codeInvalid, "signing key needs a kid and a 32-byte seed")
		}
		if a.get(tKey, k.GetKid()) != nil {
			return res(codeExists, "signing key %q exists", k.GetKid())
		}
		a.put(tKey, k)
		return ok()
	case *fsmpb.Command_IssueLease:
		return a.issueLease(p.IssueLease)
	case *fsmpb.Command_RenewLease:
		return a.renewLease(p.RenewLease)
	case *fsmpb.Command_RevokeLease:
		return a.revokeLease(p.RevokeLease)
	case *fsmpb.Command_RevokeIdentity:
		old, _ := a.get(tIdentity, p.RevokeIdentity.GetIdentityId()).(*fsmpb.Identity)
		if old == nil {
			return res(codeNotFound, "identity %q not found", p.RevokeIdentity.GetIdentityId())
		}
		n := proto.Clone(old).(*fsmpb.Identity)
		n.Epoch++
		n.Version++
		n.UpdatedUnixNano = a.now
		a.put(tIdentity, n)
		return &fsmpb.Result{Code: fsmpb.ResultCode_RESULT_CODE_OK, Version: n.Version}
	case *fsmpb.Command_ReapExpired:
		return a.reap(p.ReapExpired)
	default:
		if cmd.GetHeader().GetIgnorable() {
			return ok()
		}
		panic(fmt.Sprintf("fsm: entry %d carries a command this FSM does not know (%T); upgrade this node", a.index, p))
	}
}

func (a *applier) meta() *meta {
	m, _ := a.get(tMeta, metaKeyRow).(*meta)
	return m
}

func (a *applier) bootstrap(b *fsmpb.Bootstrap) *fsmpb.Result {
	if a.meta() != nil {
		return res(codePrecondition, "cluster already bootstrapped")
	}
	if b.GetClusterId() == "" || len(b.GetAdminTokenSha256()) != 32 || len(b.GetHmacKey()) < 32 {
		return res(codeInvalid, "bootstrap needs a cluster id, a 32-byte admin token hash and a 32-byte hmac key")
	}
	k := b.GetSigningKey()
	if k.GetKid() == "" || len(k.GetEd25519Seed()) != 32 {
		return res(codeInvalid, "bootstrap needs a signing key")
	}
	a.put(tMeta, &meta{Key: metaKeyRow, ClusterID: b.GetClusterId(), AdminSHA256: b.GetAdminTokenSha256(), HMACKey: b.GetHmacKey()})
	a.put(tKey, k)
	return ok()
}

func validName(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func (a *applier) putIdentity(p *fsmpb.PutIdentity) *fsmpb.Result {
	in := p.GetIdentity()
	switch {
	case !validName(in.GetId(), 256):
		return res(codeInvalid, "identity id must be 1..256 bytes without spaces")
	case !validKinds[in.GetKind()]:
		return res(codeInvalid, "identity kind %q: want workload, ci_job, agent or service_account", in.GetKind())
	case in.GetOwner() == "":
		return res(codeInvalid, "identity owner is required")
	case !validName(in.GetEnvironment(), 64):
		return res(codeInvalid, "identity environment is required")
	}
	old, _ := a.get(tIdentity, in.GetId()).(*fsmpb.Identity)
	if old != nil && p.GetCreateOnly() {
		return res(codeExists, "identity %q exists", in.GetId())
	}
	if p.GetExpectVersion() != 0 && (old == nil || old.GetVersion() != p.GetExpectVersion()) {
		return res(codeAborted, "identity %q: version is %d, not %d", in.GetId(), old.GetVersion(), p.GetExpectVersion())
	}
	n := proto.Clone(in).(*fsmpb.Identity)
	if n.Status == fsmpb.IdentityStatus_IDENTITY_STATUS_UNSPECIFIED {
		n.Status = fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE
	}
	n.UpdatedUnixNano = a.now
	if old == nil {
		n.Version, n.Epoch, n.CreatedUnixNano = 1, 1, a.now
	} else {
		n.Version, n.Epoch, n.CreatedUnixNano = old.GetVersion()+1, old.GetEpoch(), old.GetCreatedUnixNano()
		// Disabling invalidates everything the identity holds; re-enabling
		// does not bring those leases back.
		if old.GetStatus() == fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE && n.Status != fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE {
			n.Epoch++
		}
	}
	a.put(tIdentity, n)
	return &fsmpb.Result{Code: fsmpb.ResultCode_RESULT_CODE_OK, Version: n.Version}
}

func (a *applier) putRole(p *fsmpb.PutRole) *fsmpb.Result {
	in := p.GetRole()
	switch {
	case !validName(in.GetName(), 256):
		return res(codeInvalid, "role name must be 1..256 bytes without spaces")
	case !validName(in.GetEnvironment(), 64):
		return res(codeInvalid, "role environment is required")
	case in.GetIdentity() == "":
		return res(codeInvalid, "role identity is required")
	case in.GetRoleId() == "":
		return res(codeInvalid, "role id is required")
	case len(in.GetAuthMethods()) == 0:
		return res(codeInvalid, "role needs at least one auth method")
	case in.GetDefaultTtlNanos() <= 0 || in.GetMaxTtlNanos() < in.GetDefaultTtlNanos():
		return res(codeInvalid, "role ttls: want 0 < default ttl <= max ttl")
	}
	for _, m := range in.GetAuthMethods() {
		if !validMethods[m] {
			return res(codeInvalid, "auth method %q: want approle, jwt or mtls", m)
		}
	}
	ident, _ := a.get(tIdentity, in.GetIdentity()).(*fsmpb.Identity)
	if ident == nil {
		return res(codePrecondition, "role %q binds identity %q, which does not exist", in.GetName(), in.GetIdentity())
	}
	if ident.GetEnvironment() != in.GetEnvironment() {
		return res(codePrecondition, "role %q is for environment %q but identity %q is in %q: a role for one environment can never issue to an identity of another",
			in.GetName(), in.GetEnvironment(), ident.GetId(), ident.GetEnvironment())
	}
	if other, _ := a.txn.First(tRole, "role_id", in.GetRoleId()); other != nil && other.(*fsmpb.Role).GetName() != in.GetName() {
		return res(codeExists, "role id already used by another role")
	}
	old, _ := a.get(tRole, in.GetName()).(*fsmpb.Role)
	if old != nil && p.GetCreateOnly() {
		return res(codeExists, "role %q exists", in.GetName())
	}
	if p.GetExpectVersion() != 0 && (old == nil || old.GetVersion() != p.GetExpectVersion()) {
		return res(codeAborted, "role %q: version is %d, not %d", in.GetName(), old.GetVersion(), p.GetExpectVersion())
	}
	n := proto.Clone(in).(*fsmpb.Role)
	n.UpdatedUnixNano = a.now
	if old == nil {
		n.Version, n.Epoch, n.CreatedUnixNano = 1, 1, a.now
	} else {
		n.Version, n.Epoch, n.CreatedUnixNano = old.GetVersion()+1, old.GetEpoch(), old.GetCreatedUnixNano()
	}
	a.put(tRole, n)
	return &fsmpb.Result{Code: fsmpb.ResultCode_RESULT_CODE_OK, Version: n.Version}
}

func (a *applier) createSecretID(p *fsmpb.CreateSecretID) *fsmpb.Result {
	in := p.GetSecretId()
	switch {
	case in.GetAccessor() == "":
		return res(codeInvalid, "accessor is required")
	case len(in.GetSecretHmac()) != 32:
		return res(codeInvalid, "secret hmac must be 32 bytes")
	case p.GetTtlNanos() < 0:
		return res(codeInvalid, "ttl must not be negative")
	}
	if a.get(tRole, in.GetRole()) == nil {
		return res(codeNotFound, "role %q not found", in.GetRole())
	}
	if a.get(tSecret, in.GetAccessor()) != nil {
		return res(codeExists, "accessor exists")
	}
	if dup, _ := a.txn.First(tSecret, "hmac", in.GetSecretHmac()); dup != nil {
		return res(codeExists, "secret id exists")
	}
	n := proto.Clone(in).(*fsmpb.SecretID)
	n.CreatedUnixNano = a.now
	n.Uses = 0
	if p.GetTtlNanos() > 0 {
		n.ExpiresUnixNano = a.now + p.GetTtlNanos()
	}
	a.put(tSecret, n)
	return ok()
}

func (a *applier) putPolicySet(p *fsmpb.PutPolicySet) *fsmpb.Result {
	in := p.GetPolicySet()
	if !validName(in.GetName(), 128) || strings.ContainsRune(in.GetName(), 0) {
		return res(codeInvalid, "policy set name must be 1..128 bytes without spaces")
	}
	if in.GetCedar() == "" {
		return res(codeInvalid, "policy text is required")
	}
	old, _ := a.get(tPolicy, in.GetName()).(*fsmpb.PolicySet)
	if p.GetExpectVersion() != 0 && (old == nil || old.GetVersion() != p.GetExpectVersion()) {
		return res(codeAborted, "policy set %q: version is %d, not %d", in.GetName(), old.GetVersion(), p.GetExpectVersion())
	}
	// Versions keep counting after a delete: find the highest ever stored.
	var latest uint64
	it, err := a.txn.ReverseLowerBound(tHistory, "id", historyKey(in.GetName(), ^uint64(0)>>1))
	if err != nil {
		panic(err)
	}
	if raw := it.Next(); raw != nil {
		if row := raw.(*historyRow); row.PS.GetName() == in.GetName() {
			latest = row.PS.GetVersion()
		}
	}
	n := proto.Clone(in).(*fsmpb.PolicySet)
	n.Version = latest + 1
	n.ActivatedIndex = a.index
	n.ActivatedUnixNano = a.now
	a.put(tPolicy, n)
	a.put(tHistory, &historyRow{Key: historyKey(n.Name, n.Version), PS: n})
	a.policyEvents = append(a.policyEvents, policyEvent{ps: n})
	return &fsmpb.Result{Code: fsmpb.ResultCode_RESULT_CODE_OK, Version: n.Version}
}

func (a *applier) view() *View { return &View{txn: a.txn, index: a.index} }

func (a *applier) issueLease(p *fsmpb.IssueLease) *fsmpb.Result {
	in := p.GetLease()
	if in.GetId() == "" || p.GetTtlNanos() <= 0 {
		return res(codeInvalid, "lease id and a positive ttl are required")
	}
	if a.get(tLease, in.GetId()) != nil {
		return res(codeExists, "lease %q exists", in.GetId())
	}
	ident, _ := a.get(tIdentity, in.GetIdentity()).(*fsmpb.Identity)
	switch {
	case ident == nil:
		return res(codePrecondition, "identity %q does not exist", in.GetIdentity())
	case ident.GetStatus() != fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE:
		return res(codePrecondition, "identity %q is disabled", in.GetIdentity())
	case ident.GetEpoch() != in.GetIdentityEpoch():
		return res(codePrecondition, "identity %q was revoked after the decision", in.GetIdentity())
	}
	role, _ := a.get(tRole, in.GetRole()).(*fsmpb.Role)
	switch {
	case role == nil:
		return res(codePrecondition, "role %q does not exist", in.GetRole())
	case role.GetEpoch() != in.GetRoleEpoch():
		return res(codePrecondition, "role %q was revoked after the decision", in.GetRole())
	case role.GetIdentity() != in.GetIdentity():
		return res(codePrecondition, "role %q does not issue to identity %q", in.GetRole(), in.GetIdentity())
	case role.GetEnvironment() != ident.GetEnvironment():
		return res(codePrecondition, "role %q (%s) cannot issue to an identity in %s", role.GetName(), role.GetEnvironment(), ident.GetEnvironment())
	case p.GetTtlNanos() > role.GetMaxTtlNanos():
		return res(codeInvalid, "ttl exceeds the role's max ttl")
	}
	ps, _ := a.get(tPolicy, in.GetPolicySet()).(*fsmpb.PolicySet)
	if ps == nil || ps.GetVersion() != in.GetPolicyVersion() {
		return res(codePolicy, "policy set %q changed since the decision (version %d)", in.GetPolicySet(), in.GetPolicyVersion())
	}
	expires := a.now + p.GetTtlNanos()
	maxExpires := a.now + role.GetMaxTtlNanos()
	if in.GetParent() != "" {
		parent, reason := a.view().CheckLease(in.GetParent(), time.Unix(0, a.now))
		if reason != "" {
			return res(codePrecondition, "parent lease %q is not valid: %s", in.GetParent(), reason)
		}
		expires = min(expires, parent.GetExpiresUnixNano())
		maxExpires = min(maxExpires, parent.GetMaxExpiresUnixNano())
	}
	var secret *fsmpb.SecretID
	if acc := p.GetConsumeSecretAccessor(); acc != "" {
		secret, _ = a.get(tSecret, acc).(*fsmpb.SecretID)
		switch {
		case secret == nil || secret.GetRole() != in.GetRole():
			return res(codeDenied, "secret id is not valid for role %q", in.GetRole())
		case secret.GetExpiresUnixNano() != 0 && a.now >= secret.GetExpiresUnixNano():
			return res(codeDenied, "secret id expired")
		case secret.GetNumUses() > 0 && secret.GetUses() >= secret.GetNumUses():
			return res(codeDenied, "secret id used up")
		}
	}
	if limit := role.GetMaxLiveLeases(); limit > 0 && a.liveLeases("role", role.GetName(), limit) >= int(limit) {
		return res(codeExhausted, "role %q already holds its maximum of %d live leases", role.GetName(), limit)
	}
	if secret != nil {
		s := proto.Clone(secret).(*fsmpb.SecretID)
		s.Uses++
		a.put(tSecret, s)
	}
	n := proto.Clone(in).(*fsmpb.Lease)
	n.Owner = ident.GetOwner()
	n.Environment = ident.GetEnvironment()
	n.IssuedUnixNano = a.now
	n.ExpiresUnixNano = expires
	n.MaxExpiresUnixNano = maxExpires
	n.Renewals = 0
	n.Status = fsmpb.LeaseStatus_LEASE_STATUS_ACTIVE
	n.IssuedIndex = a.index
	n.RevokeReason = ""
	a.put(tLease, n)
	return &fsmpb.Result{Code: fsmpb.ResultCode_RESULT_CODE_OK, Lease: n}
}

// liveLeases counts valid leases under an index value, stopping at limit.
func (a *applier) liveLeases(index, value string, limit uint32) int {
	it, err := a.txn.Get(tLease, index, value)
	if err != nil {
		panic(err)
	}
	v, now, count := a.view(), time.Unix(0, a.now), 0
	for raw := it.Next(); raw != nil && count < int(limit); raw = it.Next() {
		if _, reason := v.CheckLease(raw.(*fsmpb.Lease).GetId(), now); reason == "" {
			count++
		}
	}
	return count
}

func (a *applier) renewLease(p *fsmpb.RenewLease) *fsmpb.Result {
	if p.GetTtlNanos() <= 0 {
		return res(codeInvalid, "a positive ttl is required")
	}
	lease, reason := a.view().CheckLease(p.GetLeaseId(), time.Unix(0, a.now))
	if lease == nil {
		return res(codeNotFound, "lease %q not found", p.GetLeaseId())
	}
	if reason != "" {
		return res(codePrecondition, "lease %q cannot be renewed: %s", p.GetLeaseId(), reason)
	}
	ps, _ := a.get(tPolicy, p.GetPolicySet()).(*fsmpb.PolicySet)
	if ps == nil || ps.GetVersion() != p.GetPolicyVersion() {
		return res(codePolicy, "policy set %q changed since the decision", p.GetPolicySet())
	}
	role, _ := a.get(tRole, lease.GetRole()).(*fsmpb.Role)
	if lease.GetRenewals() >= role.GetMaxRenewals() {
		return res(codeExhausted, "lease %q used all %d renewals of role %q", lease.GetId(), role.GetMaxRenewals(), role.GetName())
	}
	n := proto.Clone(lease).(*fsmpb.Lease)
	n.ExpiresUnixNano = min(a.now+p.GetTtlNanos(), lease.GetMaxExpiresUnixNano())
	n.Renewals++
	n.PolicySet, n.PolicyVersion = p.GetPolicySet(), p.GetPolicyVersion()
	a.put(tLease, n)
	return &fsmpb.Result{Code: fsmpb.ResultCode_RESULT_CODE_OK, Lease: n}
}

func (a *applier) revokeLease(p *fsmpb.RevokeLease) *fsmpb.Result {
	old, _ := a.get(tLease, p.GetLeaseId()).(*fsmpb.Lease)
	if old == nil {
		return res(codeNotFound, "lease %q not found", p.GetLeaseId())
	}
	if old.GetStatus() == fsmpb.LeaseStatus_LEASE_STATUS_REVOKED {
		return &fsmpb.Result{Code: fsmpb.ResultCode_RESULT_CODE_OK, Lease: old}
	}
	n := proto.Clone(old).(*fsmpb.Lease)
	n.Status = fsmpb.LeaseStatus_LEASE_STATUS_REVOKED
	n.RevokeReason = p.GetReason()
	a.put(tLease, n)
	return &fsmpb.Result{Code: fsmpb.ResultCode_RESULT_CODE_OK, Lease: n}
}

func (a *applier) reap(p *fsmpb.ReapExpired) *fsmpb.Result {
	limit := int(p.GetLimit())
	if limit <= 0 {
		limit = defaultReapMax
	}
	it, err := a.txn.LowerBound(tLease, "expiry", int64(0))
	if err != nil {
		panic(err)
	}
	var gone []any
	for raw := it.Next(); raw != nil && len(gone) < limit; raw = it.Next() {
		if raw.(*fsmpb.Lease).GetExpiresUnixNano() >= p.GetBeforeUnixNano() {
			break
		}
		gone = append(gone, raw)
	}
	for _, l := range gone {
		a.del(tLease, l)
	}
	return &fsmpb.Result{Code: fsmpb.ResultCode_RESULT_CODE_OK, Count: uint64(len(gone))}
}
