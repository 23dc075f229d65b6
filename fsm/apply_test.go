package fsm

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// TestApplyResults runs every command's success and each of its failure
// codes on the base fixture. A rejected command must leave the state (hash)
// exactly as it was.
func TestApplyResults(t *testing.T) {
	t.Parallel()
	type tc struct {
		name  string
		fresh bool             // start from an empty FSM instead of base
		setup func(h *harness) // extra entries before the command
		cmd   func() *fsmpb.Command
		want  fsmpb.ResultCode
		check func(t *testing.T, h *harness, r *fsmpb.Result)
	}
	seedLease := func(h *harness) { h.ok(issueCmd(lease{id: "l1"})) }
	devIdentity := func(h *harness) { h.ok(identityCmd("ci/dev", "dev")) }
	secret := func(uses uint32, ttl time.Duration) func(h *harness) {
		return func(h *harness) { h.ok(secretCmd("acc", "a", 9, uses, ttl)) }
	}
	cases := []tc{
		// bootstrap, nodes, noop
		{name: "bootstrap", fresh: true, cmd: bootstrapCmd, want: codeOK, check: func(t *testing.T, h *harness, _ *fsmpb.Result) {
			v := h.f.View()
			if !v.Bootstrapped() || v.ClusterID() != "c1" || len(v.AdminTokenSHA256()) != 32 || len(v.HMACKey()) != 32 {
				t.Fatalf("bootstrap facts: %v %q", v.Bootstrapped(), v.ClusterID())
			}
			if k, ok := v.SigningKey("k1"); !ok || k.GetCreatedUnixNano() != t0.UnixNano() {
				t.Fatalf("signing key %v", k)
			}
		}},
		{name: "bootstrap twice", cmd: bootstrapCmd, want: codePrecondition},
		{name: "bootstrap without hmac key", fresh: true, cmd: func() *fsmpb.Command {
			c := bootstrapCmd()
			c.GetBootstrap().HmacKey = nil
			return c
		}, want: codeInvalid},
		{name: "bootstrap without signing key", fresh: true, cmd: func() *fsmpb.Command {
			c := bootstrapCmd()
			c.GetBootstrap().SigningKey = nil
			return c
		}, want: codeInvalid},
		{name: "register node", cmd: func() *fsmpb.Command { return nodeCmd("n1") }, want: codeOK, check: func(t *testing.T, h *harness, _ *fsmpb.Result) {
			if n, ok := h.f.View().Node("n1"); !ok || n.GetApiAddr() != "127.0.0.1:7400" {
				t.Fatalf("node %v", n)
			}
		}},
		{name: "register node twice upserts", setup: func(h *harness) { h.ok(nodeCmd("n1")) }, cmd: func() *fsmpb.Command {
			c := nodeCmd("n1")
			c.GetRegisterNode().Node.ApiAddr = "10.0.0.1:7400"
			return c
		}, want: codeOK, check: func(t *testing.T, h *harness, _ *fsmpb.Result) {
			if n, _ := h.f.View().Node("n1"); n.GetApiAddr() != "10.0.0.1:7400" || len(h.f.View().Nodes()) != 1 {
				t.Fatalf("node %v", n)
			}
		}},
		{name: "register node without id", cmd: func() *fsmpb.Command { return nodeCmd("") }, want: codeInvalid},
		{name: "remove node", setup: func(h *harness) { h.ok(nodeCmd("n1")) }, cmd: func() *fsmpb.Command {
			return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RemoveNode{RemoveNode: &fsmpb.RemoveNode{NodeId: "n1"}}}
		}, want: codeOK, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			if _, ok := h.f.View().Node("n1"); ok || r.GetCount() != 1 {
				t.Fatalf("node still there (count %d)", r.GetCount())
			}
		}},
		{name: "remove absent node is a no-op", cmd: func() *fsmpb.Command {
			return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RemoveNode{RemoveNode: &fsmpb.RemoveNode{NodeId: "n9"}}}
		}, want: codeOK},
		{name: "noop", cmd: noopCmd, want: codeOK},

		// identities
		{name: "identity create", cmd: func() *fsmpb.Command { return identityCmd("ci/b", "prod") }, want: codeOK, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			i, _ := h.f.View().Identity("ci/b")
			if r.GetVersion() != 1 || i.GetVersion() != 1 || i.GetEpoch() != 1 || i.GetStatus() != fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE ||
				i.GetCreatedUnixNano() != t0.UnixNano() || i.GetUpdatedUnixNano() != t0.UnixNano() || i.GetAttributes()["repo"] != "writ" {
				t.Fatalf("stored %v", i)
			}
		}},
		{name: "identity update", setup: func(h *harness) { h.now = h.now.Add(time.Second) }, cmd: func() *fsmpb.Command {
			return withIdentity(identityCmd("ci/a", "prod"), func(p *fsmpb.PutIdentity) { p.ExpectVersion = 1; p.Identity.Description = "d"; p.Identity.Epoch = 99 })
		}, want: codeOK, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			i, _ := h.f.View().Identity("ci/a")
			if r.GetVersion() != 2 || i.GetEpoch() != 1 || i.GetDescription() != "d" || i.GetCreatedUnixNano() != t0.UnixNano() || i.GetUpdatedUnixNano() != t0.Add(time.Second).UnixNano() {
				t.Fatalf("stored %v", i)
			}
		}},
		{name: "identity handed to another owner: its leases go", cmd: func() *fsmpb.Command {
			return withIdentity(identityCmd("ci/a", "prod"), func(p *fsmpb.PutIdentity) { p.Identity.Owner = "team-b" })
		}, want: codeOK, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			if i, _ := h.f.View().Identity("ci/a"); i.GetEpoch() != 2 || i.GetOwner() != "team-b" {
				t.Fatalf("stored %v", i)
			}
		}},
		{name: "identity id with space", cmd: func() *fsmpb.Command { return identityCmd("ci a", "prod") }, want: codeInvalid},
		{name: "identity id too long", cmd: func() *fsmpb.Command { return identityCmd(strings.Repeat("x", 257), "prod") }, want: codeInvalid},
		{name: "identity id empty", cmd: func() *fsmpb.Command { return identityCmd("", "prod") }, want: codeInvalid},
		{name: "identity bad kind", cmd: func() *fsmpb.Command {
			return withIdentity(identityCmd("x", "prod"), func(p *fsmpb.PutIdentity) { p.Identity.Kind = "human" })
		}, want: codeInvalid},
		{name: "identity without owner", cmd: func() *fsmpb.Command {
			return withIdentity(identityCmd("x", "prod"), func(p *fsmpb.PutIdentity) { p.Identity.Owner = "" })
		}, want: codeInvalid},
		{name: "identity without environment", cmd: func() *fsmpb.Command { return identityCmd("x", "") }, want: codeInvalid},
		{name: "identity unknown status", cmd: func() *fsmpb.Command {
			return withIdentity(identityCmd("x", "prod"), func(p *fsmpb.PutIdentity) { p.Identity.Status = 7 })
		}, want: codeInvalid},
		{name: "identity create_only exists", cmd: func() *fsmpb.Command {
			return withIdentity(identityCmd("ci/a", "prod"), func(p *fsmpb.PutIdentity) { p.CreateOnly = true })
		}, want: codeExists},
		{name: "identity stale version", cmd: func() *fsmpb.Command {
			return withIdentity(identityCmd("ci/a", "prod"), func(p *fsmpb.PutIdentity) { p.ExpectVersion = 7 })
		}, want: codeAborted},
		{name: "identity expected version of a missing one", cmd: func() *fsmpb.Command {
			return withIdentity(identityCmd("ci/new", "prod"), func(p *fsmpb.PutIdentity) { p.ExpectVersion = 1 })
		}, want: codeAborted},
		{name: "delete identity", cmd: func() *fsmpb.Command { return deleteIdentityCmd("ci/a") }, want: codeOK, check: func(t *testing.T, h *harness, _ *fsmpb.Result) {
			if _, ok := h.f.View().Identity("ci/a"); ok {
				t.Fatal("identity still there")
			}
		}},
		{name: "delete unknown identity", cmd: func() *fsmpb.Command { return deleteIdentityCmd("ghost") }, want: codeNotFound},
		{name: "revoke identity", cmd: func() *fsmpb.Command { return revokeIdentityCmd("ci/a") }, want: codeOK, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			if i, _ := h.f.View().Identity("ci/a"); i.GetEpoch() != 2 || i.GetVersion() != 2 || r.GetVersion() != 2 {
				t.Fatalf("revoked identity %v", i)
			}
		}},
		{name: "revoke unknown identity", cmd: func() *fsmpb.Command { return revokeIdentityCmd("ghost") }, want: codeNotFound},

		// roles
		{name: "role create", cmd: func() *fsmpb.Command { return roleCmd("b", "ci/a", "prod") }, want: codeOK, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			v := h.f.View()
			byName, _ := v.Role("b")
			byID, _ := v.RoleByRoleID("rid-b")
			if byName != byID || byName.GetVersion() != 1 || byName.GetEpoch() != 1 || r.GetVersion() != 1 || byName.GetCreatedUnixNano() != t0.UnixNano() {
				t.Fatalf("stored %v / %v", byName, byID)
			}
		}},
		{name: "role update keeps epoch", cmd: func() *fsmpb.Command {
			return withRole(roleCmd("a", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.ExpectVersion = 1; p.Role.MaxRenewals = 9 })
		}, want: codeOK, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			if ro, _ := h.f.View().Role("a"); ro.GetVersion() != 2 || ro.GetEpoch() != 1 || ro.GetMaxRenewals() != 9 {
				t.Fatalf("stored %v", ro)
			}
		}},
		{name: "role without name", cmd: func() *fsmpb.Command { return roleCmd("", "ci/a", "prod") }, want: codeInvalid},
		{name: "role without environment", cmd: func() *fsmpb.Command { return roleCmd("b", "ci/a", "") }, want: codeInvalid},
		{name: "role without identity", cmd: func() *fsmpb.Command { return roleCmd("b", "", "prod") }, want: codeInvalid},
		{name: "role without role id", cmd: func() *fsmpb.Command {
			return withRole(roleCmd("b", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.Role.RoleId = "" })
		}, want: codeInvalid},
		{name: "role without auth methods", cmd: func() *fsmpb.Command {
			return withRole(roleCmd("b", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.Role.AuthMethods = nil })
		}, want: codeInvalid},
		{name: "role unknown auth method", cmd: func() *fsmpb.Command {
			return withRole(roleCmd("b", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.Role.AuthMethods = []string{"jwt", "password"} })
		}, want: codeInvalid},
		{name: "role zero default ttl", cmd: func() *fsmpb.Command {
			return withRole(roleCmd("b", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.Role.DefaultTtlNanos = 0 })
		}, want: codeInvalid},
		{name: "role max ttl below default", cmd: func() *fsmpb.Command {
			return withRole(roleCmd("b", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.Role.MaxTtlNanos = p.Role.DefaultTtlNanos - 1 })
		}, want: codeInvalid},
		{name: "role for an unknown identity", cmd: func() *fsmpb.Command { return roleCmd("b", "ghost", "prod") }, want: codePrecondition},
		{name: "role for an identity of another environment", setup: devIdentity, cmd: func() *fsmpb.Command {
			return roleCmd("b", "ci/dev", "prod")
		}, want: codePrecondition, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			if !strings.Contains(r.GetMessage(), "a role for one environment can never issue to an identity of another") {
				t.Fatalf("message %q", r.GetMessage())
			}
		}},
		{name: "role duplicate role id", cmd: func() *fsmpb.Command {
			return withRole(roleCmd("b", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.Role.RoleId = "rid-a" })
		}, want: codeExists},
		{name: "role create_only exists", cmd: func() *fsmpb.Command {
			return withRole(roleCmd("a", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.CreateOnly = true })
		}, want: codeExists},
		{name: "role stale version", cmd: func() *fsmpb.Command {
			return withRole(roleCmd("a", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.ExpectVersion = 3 })
		}, want: codeAborted},
		{name: "delete role", cmd: func() *fsmpb.Command { return deleteRoleCmd("a") }, want: codeOK},
		{name: "delete unknown role", cmd: func() *fsmpb.Command { return deleteRoleCmd("ghost") }, want: codeNotFound},

		// secret ids
		{name: "create secret id", setup: func(h *harness) { h.now = h.now.Add(time.Second) }, cmd: func() *fsmpb.Command {
			c := secretCmd("acc", "a", 9, 3, time.Hour)
			c.GetCreateSecretId().SecretId.Uses = 2 // Apply owns uses
			return c
		}, want: codeOK, check: func(t *testing.T, h *harness, _ *fsmpb.Result) {
			v := h.f.View()
			s, _ := v.SecretIDByHMAC(bytes.Repeat([]byte{9}, 32))
			s2, _ := v.SecretIDByAccessor("acc")
			if s != s2 || s.GetUses() != 0 || s.GetCreatedUnixNano() != h.now.UnixNano() || s.GetExpiresUnixNano() != h.now.Add(time.Hour).UnixNano() {
				t.Fatalf("stored %v", s)
			}
			if got := v.SecretIDs("a"); len(got) != 1 || got[0] != s {
				t.Fatalf("SecretIDs %v", got)
			}
		}},
		{name: "secret id without ttl never expires", cmd: func() *fsmpb.Command { return secretCmd("acc", "a", 9, 0, 0) }, want: codeOK, check: func(t *testing.T, h *harness, _ *fsmpb.Result) {
			if s, _ := h.f.View().SecretIDByAccessor("acc"); s.GetExpiresUnixNano() != 0 {
				t.Fatalf("expires %d", s.GetExpiresUnixNano())
			}
		}},
		{name: "secret id for an unknown role", cmd: func() *fsmpb.Command { return secretCmd("acc", "ghost", 9, 0, 0) }, want: codeNotFound},
		{name: "secret id with a short hmac", cmd: func() *fsmpb.Command {
			c := secretCmd("acc", "a", 9, 0, 0)
			c.GetCreateSecretId().SecretId.SecretHmac = []byte{1}
			return c
		}, want: codeInvalid},
		{name: "secret id with negative ttl", cmd: func() *fsmpb.Command { return secretCmd("acc", "a", 9, 0, -time.Second) }, want: codeInvalid},
		{name: "secret id duplicate accessor", setup: secret(0, 0), cmd: func() *fsmpb.Command { return secretCmd("acc", "a", 8, 0, 0) }, want: codeExists},
		{name: "secret id duplicate hmac", setup: secret(0, 0), cmd: func() *fsmpb.Command { return secretCmd("acc2", "a", 9, 0, 0) }, want: codeExists},
		{name: "revoke secret id", setup: secret(0, 0), cmd: func() *fsmpb.Command {
			return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeSecretId{RevokeSecretId: &fsmpb.RevokeSecretID{Accessor: "acc"}}}
		}, want: codeOK, check: func(t *testing.T, h *harness, _ *fsmpb.Result) {
			if _, ok := h.f.View().SecretIDByHMAC(bytes.Repeat([]byte{9}, 32)); ok {
				t.Fatal("secret id still found by hmac")
			}
		}},
		{name: "revoke unknown secret id", cmd: func() *fsmpb.Command {
			return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeSecretId{RevokeSecretId: &fsmpb.RevokeSecretID{Accessor: "nope"}}}
		}, want: codeNotFound},

		// policy sets
		{name: "put policy set", cmd: func() *fsmpb.Command { return policyCmd("prod") }, want: codeOK, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			ps, _ := h.f.View().PolicySet("prod")
			if r.GetVersion() != 2 || ps.GetVersion() != 2 || ps.GetActivatedIndex() != h.idx || ps.GetActivatedUnixNano() != h.now.UnixNano() {
				t.Fatalf("stored %v", ps)
			}
		}},
		{name: "policy set with matching expected version", cmd: func() *fsmpb.Command {
			c := policyCmd("prod")
			c.GetPutPolicySet().ExpectVersion = 1
			return c
		}, want: codeOK},
		{name: "policy set stale version", cmd: func() *fsmpb.Command {
			c := policyCmd("prod")
			c.GetPutPolicySet().ExpectVersion = 5
			return c
		}, want: codeAborted},
		{name: "policy set without cedar", cmd: func() *fsmpb.Command {
			c := policyCmd("prod")
			c.GetPutPolicySet().PolicySet.Cedar = ""
			return c
		}, want: codeInvalid},
		{name: "policy set without name", cmd: func() *fsmpb.Command { return policyCmd("") }, want: codeInvalid},
		{name: "delete policy set", cmd: func() *fsmpb.Command { return deletePolicyCmd("prod") }, want: codeOK, check: func(t *testing.T, h *harness, _ *fsmpb.Result) {
			v := h.f.View()
			if _, ok := v.PolicySet("prod"); ok {
				t.Fatal("still active")
			}
			if _, ok := v.PolicySetVersion("prod", 1); !ok {
				t.Fatal("history lost")
			}
		}},
		{name: "delete unknown policy set", cmd: func() *fsmpb.Command { return deletePolicyCmd("ghost") }, want: codeNotFound},

		// signing keys
		{name: "put signing key", setup: func(h *harness) { h.now = h.now.Add(time.Hour) }, cmd: func() *fsmpb.Command { return keyCmd("k2", 4) }, want: codeOK, check: func(t *testing.T, h *harness, _ *fsmpb.Result) {
			keys := h.f.View().SigningKeys()
			if len(keys) != 2 || keys[0].GetKid() != "k2" || keys[1].GetKid() != "k1" {
				t.Fatalf("keys not newest first: %v", keys)
			}
		}},
		{name: "put existing signing key", cmd: func() *fsmpb.Command { return keyCmd("k1", 4) }, want: codeExists},
		{name: "put signing key with a short seed", cmd: func() *fsmpb.Command {
			c := keyCmd("k2", 4)
			c.GetPutSigningKey().Key.Ed25519Seed = []byte{1, 2}
			return c
		}, want: codeInvalid},

		// leases
		{name: "issue", cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1"}) }, want: codeOK},
		{name: "issue without id", cmd: func() *fsmpb.Command { return issueCmd(lease{}) }, want: codeInvalid},
		{name: "issue with zero ttl", cmd: func() *fsmpb.Command {
			c := issueCmd(lease{id: "l1"})
			c.GetIssueLease().TtlNanos = 0
			return c
		}, want: codeInvalid},
		{name: "issue an existing id", setup: seedLease, cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1"}) }, want: codeExists},
		{name: "issue to an unknown identity", cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", identity: "ghost"}) }, want: codePrecondition},
		{name: "issue to a disabled identity", setup: func(h *harness) {
			h.ok(withIdentity(identityCmd("ci/a", "prod"), func(p *fsmpb.PutIdentity) { p.Identity.Status = fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED }))
		}, cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", identityEpoch: 2}) }, want: codePrecondition},
		{name: "issue under a stale identity epoch", setup: func(h *harness) { h.ok(revokeIdentityCmd("ci/a")) }, cmd: func() *fsmpb.Command {
			return issueCmd(lease{id: "l1"})
		}, want: codePrecondition},
		{name: "issue under an unknown role", cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", role: "ghost"}) }, want: codePrecondition},
		{name: "issue under a stale role epoch", cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", roleEpoch: 2}) }, want: codePrecondition},
		{name: "issue through a role bound to another identity", setup: func(h *harness) {
			h.ok(identityCmd("ci/b", "prod"))
		}, cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", identity: "ci/b"}) }, want: codePrecondition},
		{name: "issue under an unknown policy set", cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", policySet: "ghost"}) }, want: codePolicy},
		{name: "issue under a stale policy version", setup: func(h *harness) { h.ok(policyCmd("prod")) }, cmd: func() *fsmpb.Command {
			return issueCmd(lease{id: "l1"})
		}, want: codePolicy},
		{name: "issue past the role's max ttl", cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", ttl: 2 * time.Hour}) }, want: codePrecondition},
		{name: "issue under an unknown parent", cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l2", parent: "nope"}) }, want: codePrecondition},
		{name: "issue under a revoked parent", setup: func(h *harness) { seedLease(h); h.ok(revokeLeaseCmd("l1")) }, cmd: func() *fsmpb.Command {
			return issueCmd(lease{id: "l2", parent: "l1"})
		}, want: codePrecondition},
		{name: "issue with an unknown secret id", cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", secret: "nope"}) }, want: codeDenied},
		{name: "issue with another role's secret id", setup: func(h *harness) {
			h.ok(roleCmd("b", "ci/a", "prod"))
			h.ok(secretCmd("acc-b", "b", 7, 0, 0))
		}, cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", secret: "acc-b"}) }, want: codeDenied},
		{name: "issue with an expired secret id", setup: func(h *harness) {
			secret(0, time.Minute)(h)
			h.now = h.now.Add(time.Minute)
		}, cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", secret: "acc"}) }, want: codeDenied},
		{name: "issue with a used-up secret id", setup: func(h *harness) {
			secret(1, 0)(h)
			h.ok(issueCmd(lease{id: "l0", secret: "acc"}))
		}, cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l1", secret: "acc"}) }, want: codeDenied},
		{name: "issue over the role's live lease budget", setup: func(h *harness) {
			h.ok(withRole(roleCmd("a", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.Role.MaxLiveLeases = 1 }))
			seedLease(h)
		}, cmd: func() *fsmpb.Command { return issueCmd(lease{id: "l2"}) }, want: codeExhausted},
		{name: "renew", setup: seedLease, cmd: func() *fsmpb.Command { return renewCmd("l1", time.Minute, 1) }, want: codeOK},
		{name: "renew with zero ttl", setup: seedLease, cmd: func() *fsmpb.Command { return renewCmd("l1", 0, 1) }, want: codeInvalid},
		{name: "renew an unknown lease", cmd: func() *fsmpb.Command { return renewCmd("nope", time.Minute, 1) }, want: codePrecondition},
		{name: "renew a revoked lease", setup: func(h *harness) { seedLease(h); h.ok(revokeLeaseCmd("l1")) }, cmd: func() *fsmpb.Command {
			return renewCmd("l1", time.Minute, 1)
		}, want: codePrecondition, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			if !strings.Contains(r.GetMessage(), ReasonRevoked) {
				t.Fatalf("message %q does not give the reason", r.GetMessage())
			}
		}},
		{name: "renew under a stale policy version", setup: seedLease, cmd: func() *fsmpb.Command { return renewCmd("l1", time.Minute, 7) }, want: codePolicy},
		{name: "renew past max renewals", setup: func(h *harness) {
			seedLease(h)
			h.ok(renewCmd("l1", time.Minute, 1))
			h.ok(renewCmd("l1", time.Minute, 1))
		}, cmd: func() *fsmpb.Command { return renewCmd("l1", time.Minute, 1) }, want: codeExhausted},
		{name: "revoke lease", setup: seedLease, cmd: func() *fsmpb.Command { return revokeLeaseCmd("l1") }, want: codeOK, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			if r.GetLease().GetStatus() != fsmpb.LeaseStatus_LEASE_STATUS_REVOKED || r.GetLease().GetRevokeReason() != "test" {
				t.Fatalf("revoked lease %v", r.GetLease())
			}
		}},
		{name: "revoke a revoked lease", setup: func(h *harness) { seedLease(h); h.ok(revokeLeaseCmd("l1")) }, cmd: func() *fsmpb.Command {
			return revokeLeaseCmd("l1")
		}, want: codeOK},
		{name: "revoke an unknown lease", cmd: func() *fsmpb.Command { return revokeLeaseCmd("nope") }, want: codeNotFound},
		{name: "reap", setup: func(h *harness) { seedLease(h); h.now = h.now.Add(time.Minute + 1) }, cmd: func() *fsmpb.Command {
			return reapCmd(t0.Add(time.Hour), 0) // capped at the entry's time
		}, want: codeOK, check: func(t *testing.T, h *harness, r *fsmpb.Result) {
			if r.GetCount() != 1 || h.check("l1") != ReasonUnknownLease {
				t.Fatalf("reaped %d", r.GetCount())
			}
		}},
		{name: "nested batch", cmd: func() *fsmpb.Command {
			return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Commands: []*fsmpb.Command{noopCmd()}}}}
		}, want: codeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			if !tc.fresh {
				h = base(t)
			}
			if tc.setup != nil {
				tc.setup(h)
			}
			before := h.f.StateHash()
			// Each command runs inside a batch with a trailing noop, so a
			// nested batch really is nested and every command is also
			// exercised as a batch item.
			rs := h.apply(tc.cmd(), &fsmpb.Command{Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}})
			r := rs[0]
			if r.GetCode() != tc.want {
				t.Fatalf("code %v (%q), want %v", r.GetCode(), r.GetMessage(), tc.want)
			}
			if r.GetIndex() != h.idx || rs[1].GetIndex() != h.idx || rs[1].GetCode() != codeOK {
				t.Fatalf("results %v", rs)
			}
			if tc.want != codeOK {
				if r.GetMessage() == "" {
					t.Fatal("a failure without a message")
				}
				if h.f.StateHash() != before {
					t.Fatal("a rejected command changed the state")
				}
			}
			if tc.check != nil {
				tc.check(t, h, r)
			}
		})
	}
}

func TestIssueLeaseStoresWhatApplyOwns(t *testing.T) {
	t.Parallel()
	h := base(t)
	h.now = t0.Add(time.Second)
	c := issueCmd(lease{id: "l1", ttl: 10 * time.Minute})
	// The proposer cannot set what Apply owns.
	l := c.GetIssueLease().Lease
	l.Owner, l.Environment, l.Renewals, l.Status, l.IssuedIndex, l.RevokeReason = "mallory", "dev", 5, fsmpb.LeaseStatus_LEASE_STATUS_REVOKED, 99, "x"
	l.ExpiresUnixNano, l.MaxExpiresUnixNano, l.IssuedUnixNano = 1, 2, 3
	r := h.ok(c)
	want := &fsmpb.Lease{
		Id: "l1", Identity: "ci/a", IdentityEpoch: 1, Role: "a", RoleEpoch: 1, Owner: "team-a", Environment: "prod",
		Scope:          &fsmpb.Scope{Actions: []string{"deploy"}, Resources: []*fsmpb.Resource{{Type: "Deployment", Id: "api"}}},
		IssuedUnixNano: h.now.UnixNano(), ExpiresUnixNano: h.now.Add(10 * time.Minute).UnixNano(), MaxExpiresUnixNano: h.now.Add(time.Hour).UnixNano(),
		DecisionId: "d-l1", PolicySet: "prod", PolicyVersion: 1, Status: fsmpb.LeaseStatus_LEASE_STATUS_ACTIVE, IssuedIndex: h.idx, AuthMethod: "approle",
		RequestHash: requestHash(c.GetHeader().GetRequestId()),
	}
	diff(t, want, r.GetLease())
	stored, _ := h.f.View().Lease("l1")
	diff(t, want, stored)

	// A child is capped at its parent's expiry, both expiry and max expiry.
	h.now = h.now.Add(time.Minute)
	child := h.ok(issueCmd(lease{id: "l2", parent: "l1", ttl: 30 * time.Minute})).GetLease()
	if child.GetExpiresUnixNano() != stored.GetExpiresUnixNano() || child.GetMaxExpiresUnixNano() != stored.GetExpiresUnixNano() {
		t.Fatalf("child %d/%d, parent expires %d", child.GetExpiresUnixNano(), child.GetMaxExpiresUnixNano(), stored.GetExpiresUnixNano())
	}
	if got := h.f.View().Leases("ci/a", 0); len(got) != 2 || got[0].GetId() != "l1" || got[1].GetId() != "l2" {
		t.Fatalf("Leases %v", got)
	}
	if got := h.f.View().Leases("", 1); len(got) != 1 {
		t.Fatalf("Leases with limit %v", got)
	}
}

func TestBatchResults(t *testing.T) {
	t.Parallel()
	h := base(t)
	dup := issueCmd(lease{id: "l2"})
	again := issueCmd(lease{id: "l2"})
	again.Header.RequestId = dup.Header.RequestId // a retry of the same request in the same entry
	rs := h.apply(
		issueCmd(lease{id: "l1"}),
		issueCmd(lease{id: "l1"}), // same lease id, new request: conflict
		dup,
		again,
		&fsmpb.Command{Payload: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{}}},
		revokeLeaseCmd("l1"), // sees l1 from earlier in the batch
	)
	want := []fsmpb.ResultCode{codeOK, codeExists, codeOK, codeOK, codeInvalid, codeOK}
	for i, r := range rs {
		if r.GetCode() != want[i] || r.GetIndex() != h.idx {
			t.Fatalf("item %d: %v %q index %d, want %v", i, r.GetCode(), r.GetMessage(), r.GetIndex(), want[i])
		}
	}
	diff(t, rs[2], rs[3]) // the retry is answered with the stored lease
	if n := len(h.f.View().Leases("", 0)); n != 2 {
		t.Fatalf("%d leases stored, want l1 and l2", n)
	}
	if h.check("l1") != ReasonRevoked {
		t.Fatalf("l1: %s", h.check("l1"))
	}
}

func TestDedupe(t *testing.T) {
	t.Parallel()
	h := base(t)
	cmd := issueCmd(lease{id: "l1"})
	first := h.ok(cmd)
	hash := h.f.StateHash()
	replay := h.apply(cmd)[0]
	diff(t, first, replay)
	if replay.GetIndex() != h.idx-1 {
		t.Fatalf("replayed result index %d, want the original %d", replay.GetIndex(), h.idx-1)
	}
	if h.f.StateHash() != hash {
		t.Fatal("a replay changed the state")
	}

	// Failures are not remembered: the same request id is evaluated again.
	retry := issueCmd(lease{id: "l2", version: 2})
	if got := h.code(retry); got != codePolicy {
		t.Fatalf("stale decision: %v", got)
	}
	if h.f.StateHash() != hash {
		t.Fatal("a failure changed the state")
	}
	h.ok(policyCmd("prod"))
	h.ok(retry)

	// The request id survives a snapshot.
	var snap bytes.Buffer
	if _, err := h.f.Snapshot().WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	r := newHarness(t)
	if err := r.f.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	r.idx, r.now = h.idx, h.now
	diff(t, first, r.apply(cmd)[0])

	// Issuance dedupes by lease id and request id, not through the
	// window: a replay is answered as long as the lease is stored...
	h.now = t0.Add(DedupeWindow + time.Second)
	h.ok(noopCmd())
	diff(t, first, h.apply(cmd)[0])
	// ... and another request for the same lease id is a conflict.
	other := issueCmd(lease{id: "l1"})
	if got := h.code(other); got != codeExists {
		t.Fatalf("same lease id, another request: %v", got)
	}
	// Other commands are remembered for the window only.
	rv := revokeLeaseCmd("l2")
	firstRevoke := h.ok(rv)
	diff(t, firstRevoke, h.apply(rv)[0])
}

func TestDedupePruningIsBounded(t *testing.T) {
	t.Parallel()
	h := base(t)
	const entries = 3 * pruneRowsPerApply
	for range entries {
		h.ok(noopCmd())
	}
	count := func() int {
		it, _ := h.f.View().txn.Get(tApplied, "id")
		n := 0
		for it.Next() != nil {
			n++
		}
		return n
	}
	before := count()
	h.now = t0.Add(DedupeWindow + time.Second)
	h.apply(&fsmpb.Command{Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}})
	if got := count(); got != before-pruneRowsPerApply {
		t.Fatalf("%d rows after one prune, want %d", got, before-pruneRowsPerApply)
	}
	for range entries {
		h.apply(&fsmpb.Command{Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}})
	}
	if got := count(); got != 0 {
		t.Fatalf("%d rows left", got)
	}
}

func TestEpochs(t *testing.T) {
	t.Parallel()
	identity := func(h *harness, id string) *fsmpb.Identity { i, _ := h.f.View().Identity(id); return i }
	role := func(h *harness, name string) *fsmpb.Role { r, _ := h.f.View().Role(name); return r }
	status := func(s fsmpb.IdentityStatus) func(p *fsmpb.PutIdentity) {
		return func(p *fsmpb.PutIdentity) { p.Identity.Status = s }
	}

	t.Run("disable bumps, enable does not", func(t *testing.T) {
		t.Parallel()
		h := base(t)
		h.ok(issueCmd(lease{id: "l1"}))
		h.ok(withIdentity(identityCmd("ci/a", "prod"), status(fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED)))
		if e := identity(h, "ci/a").GetEpoch(); e != 2 {
			t.Fatalf("epoch %d after disable", e)
		}
		h.ok(withIdentity(identityCmd("ci/a", "prod"), status(fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE)))
		if e := identity(h, "ci/a").GetEpoch(); e != 2 {
			t.Fatalf("epoch %d after enable", e)
		}
		if r := h.check("l1"); r != ReasonIdentityRevoked {
			t.Fatalf("old lease after re-enable: %q", r)
		}
	})
	t.Run("environment move bumps", func(t *testing.T) {
		t.Parallel()
		h := base(t)
		h.ok(identityCmd("ci/a", "staging"))
		if e := identity(h, "ci/a").GetEpoch(); e != 2 {
			t.Fatalf("epoch %d", e)
		}
	})
	t.Run("re-created identity does not revive old leases", func(t *testing.T) {
		t.Parallel()
		h := base(t)
		h.ok(issueCmd(lease{id: "l1"}))
		h.ok(revokeIdentityCmd("ci/a"))
		h.ok(issueCmd(lease{id: "l2", identityEpoch: 2}))
		h.ok(deleteIdentityCmd("ci/a"))
		if r := h.check("l2"); r != ReasonIdentityDeleted {
			t.Fatalf("after delete: %q", r)
		}
		h.ok(identityCmd("ci/a", "prod"))
		if e := identity(h, "ci/a").GetEpoch(); e != 3 {
			t.Fatalf("re-created at epoch %d, want 3", e)
		}
		for _, id := range []string{"l1", "l2"} {
			if r := h.check(id); r != ReasonIdentityRevoked {
				t.Fatalf("%s after re-create: %q", id, r)
			}
		}
	})
	t.Run("role rebinding bumps", func(t *testing.T) {
		t.Parallel()
		h := base(t)
		h.ok(identityCmd("ci/b", "prod"))
		h.ok(issueCmd(lease{id: "l1"}))
		h.ok(roleCmd("a", "ci/b", "prod"))
		if e := role(h, "a").GetEpoch(); e != 2 {
			t.Fatalf("epoch %d", e)
		}
		if r := h.check("l1"); r != ReasonRoleRevoked {
			t.Fatalf("lease under the old binding: %q", r)
		}
	})
	t.Run("re-created role does not revive leases or secret ids", func(t *testing.T) {
		t.Parallel()
		h := base(t)
		h.ok(secretCmd("acc", "a", 9, 0, 0))
		h.ok(issueCmd(lease{id: "l1"}))
		if r := h.ok(deleteRoleCmd("a")); r.GetCount() != 1 {
			t.Fatalf("deleted %d secret ids", r.GetCount())
		}
		if r := h.check("l1"); r != ReasonRoleDeleted {
			t.Fatalf("after delete: %q", r)
		}
		if _, ok := h.f.View().SecretIDByAccessor("acc"); ok {
			t.Fatal("the deleted role's secret id survived")
		}
		h.ok(roleCmd("a", "ci/a", "prod"))
		if e := role(h, "a").GetEpoch(); e != 2 {
			t.Fatalf("re-created at epoch %d, want 2", e)
		}
		if r := h.check("l1"); r != ReasonRoleRevoked {
			t.Fatalf("after re-create: %q", r)
		}
	})
}

func TestSecretIDUses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		numUses uint32
		ok      int // issuances that succeed out of 3
	}{
		{"one use works exactly once", 1, 1},
		{"two uses", 2, 2},
		{"unlimited", 0, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := base(t)
			h.ok(secretCmd("acc", "a", 9, tc.numUses, 0))
			// All three in one entry: the use count is checked item by item.
			rs := h.apply(issueCmd(lease{id: "l1", secret: "acc"}), issueCmd(lease{id: "l2", secret: "acc"}), issueCmd(lease{id: "l3", secret: "acc"}))
			for i, r := range rs {
				want := codeOK
				if i >= tc.ok {
					want = codeDenied
				}
				if r.GetCode() != want {
					t.Fatalf("issuance %d: %v, want %v", i, r.GetCode(), want)
				}
			}
			if s, _ := h.f.View().SecretIDByAccessor("acc"); s.GetUses() != uint32(tc.ok) {
				t.Fatalf("uses %d", s.GetUses())
			}
		})
	}
}

func TestBudget(t *testing.T) {
	t.Parallel()
	h := base(t)
	h.ok(withRole(roleCmd("a", "ci/a", "prod"), func(p *fsmpb.PutRole) { p.Role.MaxLiveLeases = 2 }))
	h.ok(issueCmd(lease{id: "l1", ttl: time.Minute}))
	h.ok(issueCmd(lease{id: "l2", ttl: 2 * time.Minute}))
	if got := h.code(issueCmd(lease{id: "l3"})); got != codeExhausted {
		t.Fatalf("third: %v", got)
	}
	h.ok(revokeLeaseCmd("l2")) // revoked leases do not count
	h.ok(issueCmd(lease{id: "l3", ttl: 5 * time.Minute}))
	h.now = t0.Add(time.Minute) // l1 expired: no longer counts
	h.ok(issueCmd(lease{id: "l4", ttl: 5 * time.Minute}))
	if got := h.code(issueCmd(lease{id: "l5"})); got != codeExhausted {
		t.Fatalf("fifth: %v", got)
	}
	h.ok(revokeIdentityCmd("ci/a")) // epoch-invalidated leases do not count
	h.ok(issueCmd(lease{id: "l5", identityEpoch: 2}))
}

func TestRenew(t *testing.T) {
	t.Parallel()
	h := base(t)
	h.ok(issueCmd(lease{id: "l1", ttl: time.Minute}))
	h.now = t0.Add(30 * time.Second)
	before := h.f.View()
	r := h.ok(renewCmd("l1", 10*time.Minute, 1))
	if l := r.GetLease(); l.GetExpiresUnixNano() != h.now.Add(10*time.Minute).UnixNano() || l.GetRenewals() != 1 {
		t.Fatalf("renewed %v", l)
	}
	// Copy on write: a view taken before still sees the old record.
	if old, _ := before.Lease("l1"); old.GetRenewals() != 0 || old.GetExpiresUnixNano() != t0.Add(time.Minute).UnixNano() {
		t.Fatalf("old view sees %v", old)
	}
	// A renewal re-decided under a new policy version records it, and never
	// extends past max expiry (issue time + the role's max ttl).
	h.ok(policyCmd("prod"))
	h.now = t0.Add(10 * time.Minute)
	r = h.ok(renewCmd("l1", 2*time.Hour, 2))
	if l := r.GetLease(); l.GetExpiresUnixNano() != t0.Add(time.Hour).UnixNano() || l.GetRenewals() != 2 || l.GetPolicyVersion() != 2 {
		t.Fatalf("renewed %v", l)
	}
	h.now = t0.Add(time.Hour)
	if got := h.apply(renewCmd("l1", time.Minute, 2))[0]; got.GetCode() != codePrecondition || !strings.Contains(got.GetMessage(), ReasonExpired) {
		t.Fatalf("renew after max expiry: %v %q", got.GetCode(), got.GetMessage())
	}
}

func TestPolicySetVersions(t *testing.T) {
	t.Parallel()
	h := base(t)
	h.ok(policyCmd("prod"))
	h.ok(policyCmd("staging"))
	h.ok(deletePolicyCmd("prod"))
	if r := h.ok(policyCmd("prod")); r.GetVersion() != 3 {
		t.Fatalf("version after delete and re-put: %d", r.GetVersion())
	}
	v := h.f.View()
	for version := uint64(1); version <= 3; version++ {
		if ps, ok := v.PolicySetVersion("prod", version); !ok || ps.GetVersion() != version {
			t.Fatalf("history v%d: %v", version, ps)
		}
	}
	if _, ok := v.PolicySetVersion("prod", 4); ok {
		t.Fatal("v4 exists")
	}
	sets := v.PolicySets()
	if len(sets) != 2 || sets[0].GetName() != "prod" || sets[0].GetVersion() != 3 || sets[1].GetName() != "staging" {
		t.Fatalf("active sets %v", sets)
	}
	var got []string
	for _, ev := range h.events {
		got = append(got, ev.ps.GetName()+map[bool]string{true: "-", false: "+"}[ev.deleted])
	}
	diff(t, []string{"prod+", "staging+", "prod-", "prod+"}, got)
}

func TestOnPolicySetChangeSeesTheCommittedState(t *testing.T) {
	t.Parallel()
	var f *FSM
	var seen []uint64
	f = New(Config{OnPolicySetChange: func(ps *fsmpb.PolicySet, deleted bool) {
		cur, ok := f.View().PolicySet(ps.GetName())
		if !ok || cur != ps || f.AppliedIndex() != ps.GetActivatedIndex() {
			t.Errorf("callback for v%d sees %v", ps.GetVersion(), cur)
		}
		seen = append(seen, ps.GetVersion())
	}})
	h := &harness{t: t, f: f, now: t0}
	h.ok(policyCmd("prod"))
	h.ok(policyCmd("prod"))
	diff(t, []uint64{1, 2}, seen)
}

func TestHalts(t *testing.T) {
	t.Parallel()
	// What a payload added by a newer version decodes to: no payload.
	unknown := func() *fsmpb.Command { return &fsmpb.Command{Header: &fsmpb.Header{RequestId: "x"}} }
	cases := []struct {
		name string
		data func(h *harness) []byte
		want error
	}{
		{"empty entry", func(*harness) []byte { return nil }, ErrBadEntry},
		{"unknown format byte", func(*harness) []byte { return []byte{9, 1, 2} }, ErrBadEntry},
		{"bad protobuf", func(*harness) []byte { return []byte{FormatProtoV1, 0xff, 0xff} }, ErrBadEntry},
		{"unknown payload", func(h *harness) []byte { return h.entry(unknown()) }, ErrUnknownCommand},
		{"unknown payload in a batch", func(h *harness) []byte {
			return h.entry(issueCmd(lease{id: "l1"}), &fsmpb.Command{Header: &fsmpb.Header{}})
		}, ErrUnknownCommand},
		{"newer fsm version", func(h *harness) []byte {
			return h.entry(&fsmpb.Command{Header: &fsmpb.Header{MinFsmVersion: Version + 1}, Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}})
		}, ErrTooOld},
		{"newer fsm version in a batch", func(h *harness) []byte {
			return h.entry(issueCmd(lease{id: "l1"}), &fsmpb.Command{Header: &fsmpb.Header{MinFsmVersion: Version + 1}, Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}})
		}, ErrTooOld},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := base(t)
			data := tc.data(h)
			hash, idx := h.f.StateHash(), h.f.AppliedIndex()
			func() {
				defer func() {
					err, _ := recover().(error)
					if !errors.Is(err, tc.want) {
						t.Fatalf("panic %v, want one wrapping %v", err, tc.want)
					}
				}()
				h.f.Apply(h.idx+1, data)
			}()
			if h.f.StateHash() != hash || h.f.AppliedIndex() != idx {
				t.Fatal("a halted entry changed the state")
			}
			if tc.want != ErrBadEntry {
				cmd, _ := Decode(data)
				if err := CheckCommand(cmd); !errors.Is(err, tc.want) {
					t.Fatalf("CheckCommand: %v", err)
				}
			}
			// Nothing was left locked: the replica could apply again.
			h.ok(issueCmd(lease{id: "after"}))
		})
	}

	t.Run("ignorable unknown payloads are skipped", func(t *testing.T) {
		t.Parallel()
		h := base(t)
		hash := h.f.StateHash()
		rs := h.apply(&fsmpb.Command{Header: &fsmpb.Header{Ignorable: true}})
		if rs[0].GetCode() != codeOK || h.f.StateHash() != hash {
			t.Fatalf("ignorable: %v", rs[0])
		}
		rs = h.apply(issueCmd(lease{id: "l1"}), &fsmpb.Command{Header: &fsmpb.Header{Ignorable: true}})
		if rs[0].GetCode() != codeOK || rs[1].GetCode() != codeOK {
			t.Fatalf("ignorable in a batch: %v", rs)
		}
	})
}

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	cmd := issueCmd(lease{id: "l1"})
	cmd.Header.TimeUnixNano = 42
	data, err := Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if data[0] != FormatProtoV1 {
		t.Fatalf("format byte %d", data[0])
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, cmd, got)
	again, _ := Encode(got)
	if !bytes.Equal(data, again) {
		t.Fatal("encoding is not deterministic")
	}
}
