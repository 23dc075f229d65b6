package fsm

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// t0 is the log's time at the first entry of every test.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// harness applies commands to an FSM at increasing indexes, with the log
// time it is told.
type harness struct {
	t      testing.TB
	f      *FSM
	idx    uint64
	now    time.Time
	events []policyEvent // OnPolicySetChange calls, in order
}

func newHarness(t testing.TB) *harness {
	h := &harness{t: t, now: t0}
	h.f = New(Config{OnPolicySetChange: func(ps *fsmpb.PolicySet, deleted bool) {
		h.events = append(h.events, policyEvent{ps: ps, deleted: deleted})
	}})
	return h
}

// entry encodes one log entry: the command itself when there is one, else
// a batch of them; the entry header carries the harness's time.
func (h *harness) entry(cmds ...*fsmpb.Command) []byte {
	h.t.Helper()
	var e *fsmpb.Command
	if len(cmds) == 1 {
		e = cmds[0]
	} else {
		e = &fsmpb.Command{Payload: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Commands: cmds}}}
	}
	if e.Header == nil {
		e.Header = &fsmpb.Header{}
	}
	e.Header.TimeUnixNano = h.now.UnixNano()
	data, err := Encode(e)
	if err != nil {
		h.t.Fatal(err)
	}
	return data
}

// apply applies one entry and checks the result contract: one result per
// command, each carrying the entry's index unless deduplicated.
func (h *harness) apply(cmds ...*fsmpb.Command) []*fsmpb.Result {
	h.t.Helper()
	data := h.entry(cmds...)
	h.idx++
	res := h.f.Apply(h.idx, data)
	if len(res) != len(cmds) {
		h.t.Fatalf("entry %d: %d results for %d commands", h.idx, len(res), len(cmds))
	}
	if got := h.f.AppliedIndex(); got != h.idx {
		h.t.Fatalf("AppliedIndex %d after applying %d", got, h.idx)
	}
	return res
}

// ok applies one command and fails the test unless it succeeded.
func (h *harness) ok(cmd *fsmpb.Command) *fsmpb.Result {
	h.t.Helper()
	r := h.apply(cmd)[0]
	if r.GetCode() != codeOK {
		h.t.Fatalf("entry %d (%T): %v %s", h.idx, cmd.GetPayload(), r.GetCode(), r.GetMessage())
	}
	if r.GetIndex() != h.idx {
		h.t.Fatalf("entry %d: result index %d", h.idx, r.GetIndex())
	}
	return r
}

// code applies one command and returns its result code.
func (h *harness) code(cmd *fsmpb.Command) fsmpb.ResultCode {
	h.t.Helper()
	return h.apply(cmd)[0].GetCode()
}

func (h *harness) check(id string) string {
	_, reason := h.f.View().CheckLease(id, h.now)
	return reason
}

// base is a bootstrapped FSM with identity ci/a (prod), role a bound to it
// (2 renewals, no budget) and policy set prod at version 1.
func base(t testing.TB) *harness {
	h := newHarness(t)
	h.ok(bootstrapCmd())
	h.ok(identityCmd("ci/a", "prod"))
	h.ok(roleCmd("a", "ci/a", "prod"))
	h.ok(policyCmd("prod"))
	h.events = nil
	return h
}

func diff(t testing.TB, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

// ---- command builders; every command gets a fresh request id ----

var reqSeq atomic.Uint64

func rid() *fsmpb.Header { return &fsmpb.Header{RequestId: fmt.Sprintf("req-%d", reqSeq.Add(1))} }

func bootstrapCmd() *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_Bootstrap{Bootstrap: &fsmpb.Bootstrap{
		ClusterId: "c1", AdminTokenSha256: bytes.Repeat([]byte{1}, 32), HmacKey: bytes.Repeat([]byte{2}, 32),
		SigningKey: &fsmpb.SigningKey{Kid: "k1", Ed25519Seed: bytes.Repeat([]byte{3}, 32)},
	}}}
}

func identityCmd(id, env string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_PutIdentity{PutIdentity: &fsmpb.PutIdentity{Identity: &fsmpb.Identity{
		Id: id, Kind: "ci_job", Owner: "team-a", Environment: env, Attributes: map[string]string{"repo": "writ", "branch": "main"},
	}}}}
}

func withIdentity(c *fsmpb.Command, f func(p *fsmpb.PutIdentity)) *fsmpb.Command {
	f(c.GetPutIdentity())
	return c
}

func roleCmd(name, identity, env string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_PutRole{PutRole: &fsmpb.PutRole{Role: &fsmpb.Role{
		Name: name, Environment: env, Identity: identity, RoleId: "rid-" + name, AuthMethods: []string{"approle"},
		DefaultTtlNanos: int64(time.Minute), MaxTtlNanos: int64(time.Hour), MaxRenewals: 2,
		MaxDelegationDepth: MaxLeaseAncestors,
	}}}}
}

func withRole(c *fsmpb.Command, f func(p *fsmpb.PutRole)) *fsmpb.Command {
	f(c.GetPutRole())
	return c
}

func policyCmd(name string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_PutPolicySet{PutPolicySet: &fsmpb.PutPolicySet{PolicySet: &fsmpb.PolicySet{
		Name: name, Cedar: `permit (principal, action, resource);`, Description: "all",
	}}}}
}

func secretCmd(accessor, role string, hmacByte byte, uses uint32, ttl time.Duration) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_CreateSecretId{CreateSecretId: &fsmpb.CreateSecretID{
		SecretId: &fsmpb.SecretID{Accessor: accessor, Role: role, SecretHmac: bytes.Repeat([]byte{hmacByte}, 32), NumUses: uses},
		TtlNanos: int64(ttl),
	}}}
}

// lease describes an IssueLease; zero fields take the base fixture's values.
type lease struct {
	id, identity, role, parent, secret, policySet string
	identityEpoch, roleEpoch, version             uint64
	ttl                                           time.Duration
}

func issueCmd(l lease) *fsmpb.Command {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&l.identity, "ci/a")
	def(&l.role, "a")
	def(&l.policySet, "prod")
	for _, n := range []*uint64{&l.identityEpoch, &l.roleEpoch, &l.version} {
		if *n == 0 {
			*n = 1
		}
	}
	if l.ttl == 0 {
		l.ttl = time.Minute
	}
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_IssueLease{IssueLease: &fsmpb.IssueLease{
		Lease: &fsmpb.Lease{
			Id: l.id, Identity: l.identity, IdentityEpoch: l.identityEpoch, Role: l.role, RoleEpoch: l.roleEpoch,
			PolicySet: l.policySet, PolicyVersion: l.version, Parent: l.parent, DecisionId: "d-" + l.id, AuthMethod: "approle",
			Scope: &fsmpb.Scope{Actions: []string{"deploy"}, Resources: []*fsmpb.Resource{{Type: "Deployment", Id: "api"}}},
		},
		TtlNanos: int64(l.ttl), ConsumeSecretAccessor: l.secret,
	}}}
}

func renewCmd(id string, ttl time.Duration, version uint64) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RenewLease{RenewLease: &fsmpb.RenewLease{
		LeaseId: id, TtlNanos: int64(ttl), PolicySet: "prod", PolicyVersion: version,
	}}}
}

func revokeLeaseCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: id, Reason: "test"}}}
}

func revokeIdentityCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeIdentity{RevokeIdentity: &fsmpb.RevokeIdentity{IdentityId: id, Reason: "test"}}}
}

func deleteIdentityCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_DeleteIdentity{DeleteIdentity: &fsmpb.DeleteIdentity{Id: id}}}
}

func deleteRoleCmd(name string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_DeleteRole{DeleteRole: &fsmpb.DeleteRole{Name: name}}}
}

func deletePolicyCmd(name string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_DeletePolicySet{DeletePolicySet: &fsmpb.DeletePolicySet{Name: name}}}
}

func reapCmd(before time.Time, limit uint32) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_ReapExpired{ReapExpired: &fsmpb.ReapExpired{BeforeUnixNano: before.UnixNano(), Limit: limit}}}
}

func noopCmd() *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}}
}

func nodeCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RegisterNode{RegisterNode: &fsmpb.RegisterNode{Node: &fsmpb.Node{
		Id: id, RaftAddr: "127.0.0.1:7401", ApiAddr: "127.0.0.1:7400",
	}}}}
}

func keyCmd(kid string, seed byte) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_PutSigningKey{PutSigningKey: &fsmpb.PutSigningKey{Key: &fsmpb.SigningKey{
		Kid: kid, Ed25519Seed: bytes.Repeat([]byte{seed}, 32),
	}}}}
}

func revokeRoleCmd(name string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeRole{RevokeRole: &fsmpb.RevokeRole{Name: name, Reason: "test"}}}
}

func revokeOwnerCmd(owner string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeOwner{RevokeOwner: &fsmpb.RevokeOwner{Owner: owner, Reason: "test"}}}
}
