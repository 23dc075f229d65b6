package fsm

import (
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Ownership: Apply decodes each entry itself, so the records inside a
// command belong to it. A handler validates, fills in the fields Apply owns,
// and inserts the command's own record without copying it. A record already
// in the state is never modified: it is cloned, the clone changed and
// inserted in its place.

// apply dispatches one command (never a whole entry) to its handler.
func (a *applier) apply(cmd *fsmpb.Command) *fsmpb.Result {
	switch p := cmd.GetPayload().(type) {
	case *fsmpb.Command_Batch:
		return fail(codeInvalid, "batches cannot be nested")
	case *fsmpb.Command_Noop:
		return ok()
	case *fsmpb.Command_Bootstrap:
		return a.bootstrap(p.Bootstrap)
	case *fsmpb.Command_RegisterNode:
		return a.registerNode(p.RegisterNode)
	case *fsmpb.Command_RemoveNode:
		return a.removeNode(p.RemoveNode)
	case *fsmpb.Command_PutIdentity:
		return a.putIdentity(p.PutIdentity)
	case *fsmpb.Command_DeleteIdentity:
		return a.deleteIdentity(p.DeleteIdentity)
	case *fsmpb.Command_PutRole:
		return a.putRole(p.PutRole)
	case *fsmpb.Command_DeleteRole:
		return a.deleteRole(p.DeleteRole)
	case *fsmpb.Command_CreateSecretId:
		return a.createSecretID(p.CreateSecretId)
	case *fsmpb.Command_RevokeSecretId:
		return a.revokeSecretID(p.RevokeSecretId)
	case *fsmpb.Command_PutPolicySet:
		return a.putPolicySet(p.PutPolicySet)
	case *fsmpb.Command_DeletePolicySet:
		return a.deletePolicySet(p.DeletePolicySet)
	case *fsmpb.Command_PutSigningKey:
		return a.putSigningKey(p.PutSigningKey)
	case *fsmpb.Command_IssueLease:
		return a.issueLease(p.IssueLease, cmd.GetHeader().GetRequestId())
	case *fsmpb.Command_RenewLease:
		return a.renewLease(p.RenewLease)
	case *fsmpb.Command_RevokeLease:
		return a.revokeLease(p.RevokeLease)
	case *fsmpb.Command_RevokeIdentity:
		return a.revokeIdentity(p.RevokeIdentity)
	case *fsmpb.Command_ReapExpired:
		return a.reapExpired(p.ReapExpired)
	case *fsmpb.Command_PutAuthConfig:
		return a.putAuthConfig(p.PutAuthConfig)
	case *fsmpb.Command_DeleteAuthConfig:
		return a.deleteAuthConfig(p.DeleteAuthConfig)
	case *fsmpb.Command_RevokeRole:
		return a.revokeRole(p.RevokeRole)
	case *fsmpb.Command_RevokeOwner:
		return a.revokeOwner(p.RevokeOwner)
	case *fsmpb.Command_RetireSigningKey:
		return a.retireSigningKey(p.RetireSigningKey)
	default:
		// CheckCommand ran before the transaction opened: an unknown payload
		// that reaches here is ignorable.
		return &fsmpb.Result{Code: codeOK, Message: "ignorable command unknown to this version: skipped"}
	}
}

// MaxIDBytes bounds every id and name the FSM stores.
const MaxIDBytes = 256

// validID: 1..MaxIDBytes bytes of UTF-8 without spaces or control characters
// (so no index key can contain the NUL that ends another).
func validID(s string) bool {
	if s == "" || len(s) > MaxIDBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

var (
	identityKinds = map[string]bool{"workload": true, "ci_job": true, "agent": true, "service_account": true}
	authMethods   = map[string]bool{"approle": true, "jwt": true, "mtls": true}
)

func (a *applier) meta() *meta {
	m, _ := a.first(tMeta, "id", metaKey).(*meta)
	return m
}

func (a *applier) bootstrap(p *fsmpb.Bootstrap) *fsmpb.Result {
	if a.meta() != nil {
		return fail(codePrecondition, "the cluster is already bootstrapped")
	}
	switch k := p.GetSigningKey(); {
	case !validID(p.GetClusterId()):
		return fail(codeInvalid, "bootstrap: cluster id is required")
	case len(p.GetAdminTokenSha256()) != 32:
		return fail(codeInvalid, "bootstrap: admin token hash must be 32 bytes")
	case len(p.GetHmacKey()) < 32:
		return fail(codeInvalid, "bootstrap: hmac key must be at least 32 bytes")
	case !validID(k.GetKid()) || len(k.GetEd25519Seed()) != 32:
		return fail(codeInvalid, "bootstrap: signing key needs a kid and a 32-byte seed")
	case a.first(tKey, "id", k.GetKid()) != nil:
		return fail(codeExists, "signing key %q already exists", k.GetKid())
	}
	a.put(tMeta, &meta{ClusterID: p.GetClusterId(), AdminSHA256: p.GetAdminTokenSha256(), HMACKey: p.GetHmacKey()})
	a.insertSigningKey(p.GetSigningKey())
	return ok()
}

func (a *applier) registerNode(p *fsmpb.RegisterNode) *fsmpb.Result {
	n := p.GetNode()
	if !validID(n.GetId()) {
		return fail(codeInvalid, "node id is required")
	}
	a.put(tNode, n)
	return ok()
}

// removeNode is idempotent: removing an absent node is OK with count 0.
func (a *applier) removeNode(p *fsmpb.RemoveNode) *fsmpb.Result {
	old := a.first(tNode, "id", p.GetNodeId())
	if old == nil {
		return ok()
	}
	a.del(tNode, old)
	return &fsmpb.Result{Code: codeOK, Count: 1}
}

// ---- identities ----

func (a *applier) putIdentity(p *fsmpb.PutIdentity) *fsmpb.Result {
	n := p.GetIdentity()
	switch {
	case !validID(n.GetId()):
		return fail(codeInvalid, "identity id must be 1..%d bytes without spaces or control characters", MaxIDBytes)
	case !identityKinds[n.GetKind()]:
		return fail(codeInvalid, "identity kind %q: want workload, ci_job, agent or service_account", n.GetKind())
	case n.GetOwner() == "":
		return fail(codeInvalid, "identity owner is required")
	case !validID(n.GetEnvironment()):
		return fail(codeInvalid, "identity environment is required (no spaces)")
	case n.GetStatus() != fsmpb.IdentityStatus_IDENTITY_STATUS_UNSPECIFIED &&
		n.GetStatus() != fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE &&
		n.GetStatus() != fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED:
		return fail(codeInvalid, "identity status %v is not known", n.GetStatus())
	}
	old, _ := a.first(tIdentity, "id", n.GetId()).(*fsmpb.Identity)
	if old != nil && p.GetCreateOnly() {
		return fail(codeExists, "identity %q already exists", n.GetId())
	}
	if v := p.GetExpectVersion(); v != 0 && (old == nil || old.GetVersion() != v) {
		return fail(codeAborted, "identity %q is at version %d, not %d", n.GetId(), old.GetVersion(), v)
	}
	if n.Status == fsmpb.IdentityStatus_IDENTITY_STATUS_UNSPECIFIED {
		n.Status = fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE
	}
	n.UpdatedUnixNano = a.now
	if old == nil {
		n.Version, n.CreatedUnixNano = 1, a.now
		n.Epoch = a.freshIdentityEpoch(n.Id)
	} else {
		n.Version, n.CreatedUnixNano, n.Epoch = old.Version+1, old.CreatedUnixNano, old.Epoch
		// Disabling invalidates everything the identity holds, and
		// re-enabling does not bring it back. Moving it to another
		// environment does the same: its leases were issued for the old one.
		// So does handing it to another owner: its leases were stamped
		// with the old owner's accountability (and RevokeOwner epoch).
		if (old.Status == fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE && n.Status == fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED) ||
			old.Environment != n.Environment || old.Owner != n.Owner {
			n.Epoch++
			a.revoked(RevocationIdentity, n.Id, "identity disabled, moved or re-owned")
		}
	}
	a.put(tIdentity, n)
	return &fsmpb.Result{Code: codeOK, Version: n.Version}
}

// freshIdentityEpoch is the epoch of a newly created identity: 1, or above
// every epoch that leases of an earlier, deleted identity with the same id
// still carry, so that re-creating an id never brings old leases back.
func (a *applier) freshIdentityEpoch(id string) uint64 {
	e, _ := a.ls.maxEpochs(id, "")
	return e + 1
}

func (a *applier) deleteIdentity(p *fsmpb.DeleteIdentity) *fsmpb.Result {
	old := a.first(tIdentity, "id", p.GetId())
	if old == nil {
		return fail(codeNotFound, "identity %q not found", p.GetId())
	}
	// Its leases stay until they expire; CheckLease reports identity_deleted.
	a.del(tIdentity, old)
	a.revoked(RevocationIdentity, p.GetId(), "identity deleted")
	return ok()
}

// revokeIdentity bumps the epoch: every lease the identity holds is invalid
// at once, in one small entry, whatever their number.
func (a *applier) revokeIdentity(p *fsmpb.RevokeIdentity) *fsmpb.Result {
	old, _ := a.first(tIdentity, "id", p.GetIdentityId()).(*fsmpb.Identity)
	if old == nil {
		return fail(codeNotFound, "identity %q not found", p.GetIdentityId())
	}
	n := proto.Clone(old).(*fsmpb.Identity)
	n.Epoch++
	n.Version++
	n.UpdatedUnixNano = a.now
	a.put(tIdentity, n)
	a.revoked(RevocationIdentity, n.Id, p.GetReason())
	return &fsmpb.Result{Code: codeOK, Version: n.Version}
}

// ---- roles ----

func (a *applier) putRole(p *fsmpb.PutRole) *fsmpb.Result {
	n := p.GetRole()
	switch {
	case !validID(n.GetName()):
		return fail(codeInvalid, "role name must be 1..%d bytes without spaces or control characters", MaxIDBytes)
	case !validID(n.GetEnvironment()):
		return fail(codeInvalid, "role environment is required (no spaces)")
	case (n.GetIdentity() == "") == (n.GetIdentityTemplate() == ""):
		return fail(codeInvalid, "role needs exactly one of identity and identity_template")
	case n.GetIdentity() != "" && !validID(n.GetIdentity()):
		return fail(codeInvalid, "role identity must be 1..%d bytes without spaces or control characters", MaxIDBytes)
	case n.GetIdentityTemplate() != "" && !validTemplate(n.GetIdentityTemplate()):
		return fail(codeInvalid, "role identity_template %q: want text with {placeholders}, no spaces, at most %d bytes", n.GetIdentityTemplate(), MaxIDBytes)
	case !validID(n.GetRoleId()):
		return fail(codeInvalid, "role id is required (no spaces)")
	case len(n.GetAuthMethods()) == 0:
		return fail(codeInvalid, "role needs at least one auth method")
	case n.GetDefaultTtlNanos() <= 0 || n.GetMaxTtlNanos() < n.GetDefaultTtlNanos():
		return fail(codeInvalid, "role ttls: want 0 < default ttl <= max ttl")
	}
	for _, m := range n.GetAuthMethods() {
		if !authMethods[m] {
			return fail(codeInvalid, "auth method %q: want approle, jwt or mtls", m)
		}
	}
	if r := a.checkRoleBindings(n); r != nil {
		return r
	}
	if n.GetIdentity() != "" {
		ident, _ := a.first(tIdentity, "id", n.GetIdentity()).(*fsmpb.Identity)
		if ident == nil {
			return fail(codePrecondition, "role %q binds identity %q, which does not exist", n.GetName(), n.GetIdentity())
		}
		if ident.GetEnvironment() != n.GetEnvironment() {
			return fail(codePrecondition, "role %q is for environment %q but identity %q is in %q: a role for one environment can never issue to an identity of another",
				n.GetName(), n.GetEnvironment(), ident.GetId(), ident.GetEnvironment())
		}
	}
	old, _ := a.first(tRole, "id", n.GetName()).(*fsmpb.Role)
	if old != nil && p.GetCreateOnly() {
		return fail(codeExists, "role %q already exists", n.GetName())
	}
	if v := p.GetExpectVersion(); v != 0 && (old == nil || old.GetVersion() != v) {
		return fail(codeAborted, "role %q is at version %d, not %d", n.GetName(), old.GetVersion(), v)
	}
	if other, _ := a.first(tRole, iRoleID, n.GetRoleId()).(*fsmpb.Role); other != nil && other.GetName() != n.GetName() {
		return fail(codeExists, "role id is already used by role %q", other.GetName())
	}
	n.UpdatedUnixNano = a.now
	if old == nil {
		n.Version, n.CreatedUnixNano = 1, a.now
		n.Epoch = a.freshRoleEpoch(n.Name)
	} else {
		n.Version, n.CreatedUnixNano, n.Epoch = old.Version+1, old.CreatedUnixNano, old.Epoch
		// Rebinding the role to another identity or environment invalidates
		// what it issued under the old binding.
		if old.Identity != n.Identity || old.IdentityTemplate != n.IdentityTemplate || old.Environment != n.Environment {
			n.Epoch++
			a.revoked(RevocationRole, n.Name, "role rebound")
		}
	}
	a.put(tRole, n)
	return &fsmpb.Result{Code: codeOK, Version: n.Version}
}

// freshRoleEpoch: like freshIdentityEpoch, for leases of a deleted role.
func (a *applier) freshRoleEpoch(name string) uint64 {
	_, e := a.ls.maxEpochs("", name)
	return e + 1
}

// deleteRole removes a role and its secret ids (which would otherwise log in
// again to a role re-created under the same name). Its leases stay until
// they expire; CheckLease reports role_deleted.
func (a *applier) deleteRole(p *fsmpb.DeleteRole) *fsmpb.Result {
	old := a.first(tRole, "id", p.GetName())
	if old == nil {
		return fail(codeNotFound, "role %q not found", p.GetName())
	}
	var secrets []any
	it := a.iter(tSecret, iRole, p.GetName())
	for raw := it.Next(); raw != nil; raw = it.Next() {
		secrets = append(secrets, raw)
	}
	for _, s := range secrets {
		a.del(tSecret, s)
	}
	a.del(tRole, old)
	a.revoked(RevocationRole, p.GetName(), "role deleted")
	return &fsmpb.Result{Code: codeOK, Count: uint64(len(secrets))}
}

// ---- secret ids ----

func (a *applier) createSecretID(p *fsmpb.CreateSecretID) *fsmpb.Result {
	n := p.GetSecretId()
	switch {
	case !validID(n.GetAccessor()):
		return fail(codeInvalid, "secret id accessor is required")
	case len(n.GetSecretHmac()) != 32:
		return fail(codeInvalid, "secret id hmac must be 32 bytes")
	case p.GetTtlNanos() < 0:
		return fail(codeInvalid, "secret id ttl must not be negative")
	}
	if a.first(tRole, "id", n.GetRole()) == nil {
		return fail(codeNotFound, "role %q not found", n.GetRole())
	}
	if a.first(tSecret, "id", n.GetAccessor()) != nil {
		return fail(codeExists, "secret id accessor already exists")
	}
	if a.first(tSecret, iHMAC, n.GetSecretHmac()) != nil {
		return fail(codeExists, "secret id already exists")
	}
	n.CreatedUnixNano = a.now
	n.Uses = 0
	n.ExpiresUnixNano = 0
	if ttl := p.GetTtlNanos(); ttl > 0 {
		n.ExpiresUnixNano = addNanos(a.now, ttl)
	}
	a.put(tSecret, n)
	return ok()
}

func (a *applier) revokeSecretID(p *fsmpb.RevokeSecretID) *fsmpb.Result {
	old := a.first(tSecret, "id", p.GetAccessor())
	if old == nil {
		return fail(codeNotFound, "secret id accessor %q not found", p.GetAccessor())
	}
	a.del(tSecret, old)
	return ok()
}

// ---- policy sets ----

func (a *applier) putPolicySet(p *fsmpb.PutPolicySet) *fsmpb.Result {
	n := p.GetPolicySet()
	switch {
	case !validID(n.GetName()):
		return fail(codeInvalid, "policy set name must be 1..%d bytes without spaces or control characters", MaxIDBytes)
	case n.GetCedar() == "":
		return fail(codeInvalid, "policy set %q: cedar text is required", n.GetName())
	}
	active, _ := a.first(tPolicy, "id", n.GetName()).(*fsmpb.PolicySet)
	if v := p.GetExpectVersion(); v != 0 && (active == nil || active.GetVersion() != v) {
		return fail(codeAborted, "policy set %q is at version %d, not %d", n.GetName(), active.GetVersion(), v)
	}
	n.Version = a.latestPolicyVersion(n.Name) + 1
	n.ActivatedIndex = a.index
	n.ActivatedUnixNano = a.now
	a.put(tPolicy, n)
	a.put(tHistory, n)
	if keep := p.GetKeepVersions(); keep > 0 {
		a.prunePolicyHistory(n.Name, int(keep))
	}
	a.policyEvents = append(a.policyEvents, policyEvent{ps: n})
	a.revoked(RevocationPolicySet, n.Name, "policy set changed")
	return &fsmpb.Result{Code: codeOK, Version: n.Version}
}

// prunePolicyHistory deletes the oldest stored versions of name until at
// most keep remain. The newest version (the one just activated) is always
// among those kept, so the active version is never pruned.
func (a *applier) prunePolicyHistory(name string, keep int) {
	it, err := a.txn.LowerBound(tHistory, "id", name, uint64(0))
	if err != nil {
		panic(err)
	}
	var versions []*fsmpb.PolicySet
	for obj := it.Next(); obj != nil; obj = it.Next() {
		ps := obj.(*fsmpb.PolicySet)
		if ps.GetName() != name {
			break
		}
		versions = append(versions, ps)
	}
	for i := 0; i < len(versions)-keep; i++ {
		a.del(tHistory, versions[i])
	}
}

// latestPolicyVersion is the highest version ever stored under name (versions
// keep counting across a delete, so "issued under v3" always means one text).
func (a *applier) latestPolicyVersion(name string) uint64 {
	it, err := a.txn.ReverseLowerBound(tHistory, "id", name, uint64(1<<64-1))
	if err != nil {
		panic(err)
	}
	if ps, _ := it.Next().(*fsmpb.PolicySet); ps != nil && ps.GetName() == name {
		return ps.GetVersion()
	}
	return 0
}

// deletePolicySet deactivates a set; its versions stay in the history.
func (a *applier) deletePolicySet(p *fsmpb.DeletePolicySet) *fsmpb.Result {
	old, _ := a.first(tPolicy, "id", p.GetName()).(*fsmpb.PolicySet)
	if old == nil {
		return fail(codeNotFound, "policy set %q not found", p.GetName())
	}
	a.del(tPolicy, old)
	a.policyEvents = append(a.policyEvents, policyEvent{ps: old, deleted: true})
	a.revoked(RevocationPolicySet, p.GetName(), "policy set deleted")
	return ok()
}

// ---- signing keys ----

func (a *applier) putSigningKey(p *fsmpb.PutSigningKey) *fsmpb.Result {
	k := p.GetKey()
	if !validID(k.GetKid()) || len(k.GetEd25519Seed()) != 32 {
		return fail(codeInvalid, "signing key needs a kid and a 32-byte seed")
	}
	if a.first(tKey, "id", k.GetKid()) != nil {
		return fail(codeExists, "signing key %q already exists", k.GetKid())
	}
	if p.GetRetireOthersAfterNanos() < 0 {
		return fail(codeInvalid, "retire_others_after must not be negative")
	}
	k.CreatedUnixNano = 0 // Apply stamps it: the newest key signs
	k.RetireUnixNano = 0
	if d := p.GetRetireOthersAfterNanos(); d > 0 {
		// Rotation: the others keep verifying through the overlap window.
		var others []*fsmpb.SigningKey
		it := a.iter(tKey, "id")
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if o := raw.(*fsmpb.SigningKey); o.RetireUnixNano == 0 {
				others = append(others, o)
			}
		}
		for _, o := range others {
			c := proto.Clone(o).(*fsmpb.SigningKey)
			c.RetireUnixNano = addNanos(a.now, d)
			a.put(tKey, c)
		}
	}
	a.insertSigningKey(k)
	return ok()
}

// insertSigningKey stamps a key without a creation time with the entry's,
// and always later than every other key's: the newest key signs, so
// "newest" must never be a tie (two keys put within one clock tick).
func (a *applier) insertSigningKey(k *fsmpb.SigningKey) {
	if k.CreatedUnixNano == 0 {
		k.CreatedUnixNano = a.now
	}
	it := a.iter(tKey, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if c := raw.(*fsmpb.SigningKey).CreatedUnixNano; c >= k.CreatedUnixNano {
			k.CreatedUnixNano = c + 1
		}
	}
	a.put(tKey, k)
}
