package fsm

import (
	"bytes"
	"testing"
	"time"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Renewal limits and max TTL, with the log's clock (the entry header time is
// the FSM's only clock, so the harness's time is a fake clock).
func TestRenewLimitsAndMaxTTL(t *testing.T) {
	t.Parallel()
	h := base(t) // role a: max ttl 1h, 2 renewals
	h.ok(issueCmd(lease{id: "l1", ttl: 10 * time.Minute}))
	at := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }

	h.now = t0.Add(9 * time.Minute)
	if l := h.ok(renewCmd("l1", 30*time.Minute, 1)).GetLease(); l.GetExpiresUnixNano() != at(39*time.Minute) || l.GetRenewals() != 1 {
		t.Fatalf("first renewal: %v", l)
	}
	h.now = t0.Add(38 * time.Minute)
	if l := h.ok(renewCmd("l1", 30*time.Minute, 1)).GetLease(); l.GetExpiresUnixNano() != at(time.Hour) {
		t.Fatalf("second renewal is capped at the max expiry (issue + max ttl): %v", l)
	}
	if c := h.code(renewCmd("l1", time.Minute, 1)); c != codeExhausted {
		t.Fatalf("third renewal: %v", c)
	}
	if r := h.check("l1"); r != "" {
		t.Fatalf("before max expiry: %q", r)
	}
	h.now = t0.Add(time.Hour)
	if r := h.check("l1"); r != ReasonExpired {
		t.Fatalf("at max expiry: %q", r)
	}
	if c := h.code(renewCmd("l1", time.Minute, 1)); c != codePrecondition {
		t.Fatalf("renewing an expired lease: %v", c)
	}
	if c := h.code(issueCmd(lease{id: "l2", ttl: time.Hour + time.Second})); c != codePrecondition {
		t.Fatalf("a ttl over the role's max: %v", c)
	}

	// A child never outlives its parent, even when renewed.
	h.ok(issueCmd(lease{id: "p", ttl: 10 * time.Minute}))
	h.ok(issueCmd(lease{id: "c", parent: "p", ttl: 5 * time.Minute}))
	h.now = h.now.Add(4 * time.Minute)
	if l := h.ok(renewCmd("c", 30*time.Minute, 1)).GetLease(); l.GetExpiresUnixNano() != t0.Add(time.Hour+10*time.Minute).UnixNano() {
		t.Fatalf("child renewed past its parent: %v", l)
	}
}

func TestRevokeTargetsAndCompletion(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		cmd    func() *fsmpb.Command
		code   fsmpb.ResultCode
		reason map[string]string // lease → CheckLease reason afterwards
		kind   string
	}{
		{name: "role", cmd: func() *fsmpb.Command { return revokeRoleCmd("a") }, code: codeOK,
			reason: map[string]string{"a1": ReasonRoleRevoked, "a2": ReasonRoleRevoked, "b1": ""}, kind: RevocationRole},
		{name: "unknown role", cmd: func() *fsmpb.Command { return revokeRoleCmd("nope") }, code: codeNotFound,
			reason: map[string]string{"a1": "", "b1": ""}},
		{name: "owner", cmd: func() *fsmpb.Command { return revokeOwnerCmd("team-a") }, code: codeOK,
			reason: map[string]string{"a1": ReasonOwnerRevoked, "a2": ReasonOwnerRevoked, "b1": ""}, kind: RevocationOwner},
		{name: "owner nobody names", cmd: func() *fsmpb.Command { return revokeOwnerCmd("team-z") }, code: codeOK,
			reason: map[string]string{"a1": "", "b1": ""}, kind: RevocationOwner},
		{name: "empty owner", cmd: func() *fsmpb.Command { return revokeOwnerCmd("") }, code: codeInvalid,
			reason: map[string]string{"a1": ""}},
		{name: "subtree keeps the root", cmd: func() *fsmpb.Command {
			c := revokeLeaseCmd("a1")
			c.GetRevokeLease().DescendantsOnly = true
			return c
		}, code: codeOK, reason: map[string]string{"a1": "", "a2": ReasonParentInvalid, "a3": ReasonParentInvalid, "b1": ""}, kind: RevocationSubtree},
		{name: "complete", cmd: func() *fsmpb.Command {
			c := revokeLeaseCmd("a1")
			c.GetRevokeLease().Completed = true
			return c
		}, code: codeOK, reason: map[string]string{"a1": ReasonCompleted, "a2": ReasonParentInvalid, "b1": ""}, kind: RevocationCompleted},
		{name: "subtree and completed together", cmd: func() *fsmpb.Command {
			c := revokeLeaseCmd("a1")
			c.GetRevokeLease().DescendantsOnly, c.GetRevokeLease().Completed = true, true
			return c
		}, code: codeInvalid, reason: map[string]string{"a1": "", "a2": ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := base(t) // ci/a owned by team-a
			h.ok(withIdentity(identityCmd("ci/b", "prod"), func(p *fsmpb.PutIdentity) { p.Identity.Owner = "team-b" }))
			h.ok(roleCmd("b", "ci/b", "prod"))
			h.ok(issueCmd(lease{id: "a1"}))
			h.ok(issueCmd(lease{id: "a2", parent: "a1"}))
			h.ok(issueCmd(lease{id: "a3", parent: "a2"}))
			h.ok(issueCmd(lease{id: "b1", identity: "ci/b", role: "b"}))
			before := h.idx
			if r := h.apply(tc.cmd())[0]; r.GetCode() != tc.code {
				t.Fatalf("%v %s, want %v", r.GetCode(), r.GetMessage(), tc.code)
			}
			for id, want := range tc.reason {
				if got := h.check(id); got != want {
					t.Errorf("%s: %q, want %q", id, got, want)
				}
			}
			evs := h.f.Revocations(before, 0).Events
			if tc.kind == "" && len(evs) != 0 || tc.kind != "" && (len(evs) != 1 || evs[0].Kind != tc.kind || evs[0].Index != h.idx) {
				t.Fatalf("revocations %+v, want one %q", evs, tc.kind)
			}
		})
	}
}

func TestIdentityBudget(t *testing.T) {
	t.Parallel()
	h := base(t)
	h.ok(withIdentity(identityCmd("ci/a", "prod"), func(p *fsmpb.PutIdentity) { p.Identity.MaxLiveLeases = 2 }))
	h.ok(roleCmd("a2", "ci/a", "prod")) // a second role for the same identity
	h.ok(issueCmd(lease{id: "l1", ttl: time.Minute}))
	h.ok(issueCmd(lease{id: "l2", role: "a2", ttl: 2 * time.Minute}))
	if c := h.code(issueCmd(lease{id: "l3", role: "a2"})); c != codeExhausted {
		t.Fatalf("third lease across two roles: %v", c)
	}
	h.ok(revokeLeaseCmd("l2")) // revoked frees its slot at once
	h.ok(issueCmd(lease{id: "l3"}))
	if c := h.code(issueCmd(lease{id: "l4"})); c != codeExhausted {
		t.Fatalf("after refilling: %v", c)
	}
	h.now = t0.Add(time.Minute) // l1 and l3 expire: both slots free, before any reaping
	h.ok(issueCmd(lease{id: "l4"}))
	h.ok(issueCmd(lease{id: "l5"}))
}

func TestSigningKeyRotation(t *testing.T) {
	t.Parallel()
	h := base(t) // bootstrap key k1
	h.now = t0.Add(time.Minute)
	rot := keyCmd("k2", 9)
	rot.GetPutSigningKey().RetireOthersAfterNanos = int64(time.Hour)
	h.ok(rot)
	keys := h.f.View().SigningKeys()
	if len(keys) != 2 || keys[0].GetKid() != "k2" || keys[0].GetRetireUnixNano() != 0 || keys[1].GetRetireUnixNano() != t0.Add(time.Minute+time.Hour).UnixNano() {
		t.Fatalf("after rotation: %v", keys)
	}
	before := h.idx
	if c := h.code(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RetireSigningKey{RetireSigningKey: &fsmpb.RetireSigningKey{Kid: "k2"}}}); c != codePrecondition {
		t.Fatalf("retiring the key in use: %v", c)
	}
	if c := h.code(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RetireSigningKey{RetireSigningKey: &fsmpb.RetireSigningKey{Kid: "nope"}}}); c != codeNotFound {
		t.Fatalf("retiring an unknown key: %v", c)
	}
	h.ok(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RetireSigningKey{RetireSigningKey: &fsmpb.RetireSigningKey{Kid: "k1"}}})
	if keys := h.f.View().SigningKeys(); len(keys) != 1 || keys[0].GetKid() != "k2" {
		t.Fatalf("after retiring k1: %v", keys)
	}
	if evs := h.f.Revocations(before, 0).Events; len(evs) != 1 || evs[0].Kind != RevocationSigningKey || evs[0].Target != "k1" {
		t.Fatalf("revocations %+v", evs)
	}
}

func TestRevocationHistory(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.f = New(Config{RevocationHistory: 4})
	h.ok(bootstrapCmd())
	h.ok(identityCmd("ci/a", "prod"))
	h.ok(roleCmd("a", "ci/a", "prod"))
	h.ok(policyCmd("prod")) // event 1 (policy_set) at index 4
	// One entry with two revocations (index 5), then single ones.
	h.apply(revokeOwnerCmd("x"), revokeOwnerCmd("y"))
	h.ok(revokeOwnerCmd("z")) // 6
	if b := h.f.Revocations(0, 0); b.Reset || len(b.Events) != 4 || b.UpTo != 6 {
		t.Fatalf("all: %+v", b)
	}
	// A limit never splits an entry's events.
	if b := h.f.Revocations(4, 1); len(b.Events) != 2 || b.UpTo != 5 {
		t.Fatalf("limit 1 after 4: %+v", b)
	}
	if b := h.f.Revocations(5, 0); len(b.Events) != 1 || b.Events[0].Target != "z" {
		t.Fatalf("after 5: %+v", b)
	}
	h.ok(noopCmd()) // 7: no event, but watchers learn the index
	if b := h.f.Revocations(6, 0); len(b.Events) != 0 || b.UpTo != 7 || b.Reset {
		t.Fatalf("after 6: %+v", b)
	}
	// A fifth event evicts the oldest (index 4): resuming from before it resets.
	next := h.f.Revocations(7, 0).Next
	h.ok(revokeOwnerCmd("w")) // 8
	select {
	case <-next:
	default:
		t.Fatal("Next not closed by a new revocation")
	}
	if b := h.f.Revocations(3, 0); !b.Reset || b.UpTo != 8 {
		t.Fatalf("after eviction, from 3: %+v", b)
	}
	if b := h.f.Revocations(4, 0); b.Reset || len(b.Events) != 4 {
		t.Fatalf("after eviction, from 4: %+v", b)
	}
	// A restore forgets everything before the snapshot.
	var snap bytes.Buffer
	if _, err := h.f.Snapshot().WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	if err := h.f.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if b := h.f.Revocations(7, 0); !b.Reset || b.UpTo != 8 {
		t.Fatalf("after restore, from 7: %+v", b)
	}
	if b := h.f.Revocations(8, 0); b.Reset || len(b.Events) != 0 {
		t.Fatalf("after restore, from 8: %+v", b)
	}
}
