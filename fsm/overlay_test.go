package fsm

import (
	"fmt"
	"sync"
	"testing"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

func completeLeaseCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: id, Reason: "done", Completed: true}}}
}

func revokeSubtreeCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: id, Reason: "test", DescendantsOnly: true}}}
}

// overlayFixture: l1 <- l2 <- l3 of ci/a (owner team-a, role a) and l9 of
// ci/b (owner team-b, role b), applied to every harness given.
func overlayFixture(hs ...*harness) {
	cmds := []*fsmpb.Command{
		withIdentity(identityCmd("ci/b", "prod"), func(p *fsmpb.PutIdentity) { p.Identity.Owner = "team-b" }),
		roleCmd("b", "ci/b", "prod"),
		issueCmd(lease{id: "l1"}),
		issueCmd(lease{id: "l2", parent: "l1"}),
		issueCmd(lease{id: "l3", parent: "l2"}),
		issueCmd(lease{id: "l9", identity: "ci/b", role: "b"}),
	}
	for _, h := range hs {
		for _, c := range cmds {
			h.ok(c)
		}
	}
}

var overlayLeases = []string{"l1", "l2", "l3", "l9"}

// TestOverlayMatchesApply: for every revocation kind, a view with the
// revocation in its overlay judges every lease exactly as a replica that
// applied it, and applying it empties the overlay without changing a verdict.
func TestOverlayMatchesApply(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cmd  func() *fsmpb.Command
	}{
		{"lease", func() *fsmpb.Command { return revokeLeaseCmd("l1") }},
		{"child lease", func() *fsmpb.Command { return revokeLeaseCmd("l2") }},
		{"completed", func() *fsmpb.Command { return completeLeaseCmd("l1") }},
		{"subtree", func() *fsmpb.Command { return revokeSubtreeCmd("l1") }},
		{"subtree of a child", func() *fsmpb.Command { return revokeSubtreeCmd("l2") }},
		{"subtree of a leaf", func() *fsmpb.Command { return revokeSubtreeCmd("l3") }},
		{"identity", func() *fsmpb.Command { return revokeIdentityCmd("ci/a") }},
		{"other identity", func() *fsmpb.Command { return revokeIdentityCmd("ci/b") }},
		{"role", func() *fsmpb.Command { return revokeRoleCmd("a") }},
		{"owner", func() *fsmpb.Command { return revokeOwnerCmd("team-a") }},
		{"owner of nobody", func() *fsmpb.Command { return revokeOwnerCmd("team-z") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			applied, pending := base(t), base(t)
			overlayFixture(applied, pending)
			cmd := tc.cmd()
			applied.ok(cmd)
			p, ok := PendingOf(cmd)
			if !ok {
				t.Fatalf("PendingOf(%T) = false", cmd.GetPayload())
			}
			p.Index = applied.idx
			if !pending.f.Overlay(p) || pending.f.OverlayLen() != 1 {
				t.Fatalf("Overlay(%+v): not installed", p)
			}
			for _, id := range overlayLeases {
				if got, want := pending.check(id), applied.check(id); got != want {
					t.Errorf("%s with the revocation pending: %q, applied: %q", id, got, want)
				}
			}
			pending.ok(cmd)
			if n := pending.f.OverlayLen(); n != 0 {
				t.Fatalf("overlay holds %d targets after the apply", n)
			}
			for _, id := range overlayLeases {
				if got, want := pending.check(id), applied.check(id); got != want {
					t.Errorf("%s after the apply: %q, want %q", id, got, want)
				}
			}
		})
	}
}

// TestOverlayKeyedByTarget: a lease issued and revoked before this replica
// applied the issuance is rejected once the issuance is applied, for every
// kind; a lease issued after the revocation's index is not touched.
func TestOverlayKeyedByTarget(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind, id, want string
		before         string // l5's verdict before this replica applied its issuance
	}{
		// A revocation of l5 itself names it: the replica says so even
		// before it has the lease.
		{RevocationLease, "l5", ReasonRevoked, ReasonRevoked},
		{RevocationCompleted, "l5", ReasonCompleted, ReasonCompleted},
		{RevocationSubtree, "l1", ReasonParentInvalid, ReasonUnknownLease},
		{RevocationIdentity, "ci/a", ReasonIdentityRevoked, ReasonUnknownLease},
		{RevocationRole, "a", ReasonRoleRevoked, ReasonUnknownLease},
		{RevocationOwner, "team-a", ReasonOwnerRevoked, ReasonUnknownLease},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			h := base(t)
			overlayFixture(h)
			// The leader issued l5 at idx+1 and revoked at idx+2; this
			// replica has applied neither.
			if !h.f.Overlay(Pending{Index: h.idx + 2, Kind: tc.kind, ID: tc.id}) {
				t.Fatal("not installed")
			}
			if r := h.check("l5"); r != tc.before {
				t.Fatalf("l5 before its issuance: %q, want %q", r, tc.before)
			}
			if r := h.f.View().LeaseValid("l5", h.now); r != tc.before {
				t.Fatalf("LeaseValid(l5) before its issuance: %q, want %q", r, tc.before)
			}
			h.ok(issueCmd(lease{id: "l5", parent: "l1"}))
			if r := h.check("l5"); r != tc.want {
				t.Fatalf("l5 issued, revocation pending: %q, want %q", r, tc.want)
			}
			if h.f.OverlayLen() != 1 {
				t.Fatal("overlay dropped before its index")
			}
			h.ok(noopCmd()) // the revocation's index; here a no-op, so only the overlay can reject
			if r := h.check("l5"); r != "" || h.f.OverlayLen() != 0 {
				t.Fatalf("at the revocation's index the overlay must be gone: %q, %d held", r, h.f.OverlayLen())
			}
		})
	}
}

func TestOverlayEdges(t *testing.T) {
	t.Parallel()
	h := base(t)
	overlayFixture(h)
	if !h.f.Overlay(Pending{Index: h.idx, Kind: RevocationLease, ID: "l1"}) {
		t.Fatal("a push for an applied index must report in force")
	}
	if h.f.OverlayLen() != 0 || h.check("l1") != "" {
		t.Fatal("a push for an applied index must change nothing")
	}
	for _, p := range []Pending{
		{Index: h.idx + 1, Kind: RevocationSigningKey, ID: "k1"},
		{Index: h.idx + 1, Kind: "nonsense", ID: "l1"},
		{Index: h.idx + 1, Kind: RevocationLease},
	} {
		if h.f.Overlay(p) || h.f.OverlayLen() != 0 {
			t.Fatalf("Overlay(%+v) accepted", p)
		}
	}
	// The applier never sees the overlay: a replica with l1's revocation
	// pending still applies a delegation from l1 as every other replica does.
	h.f.Overlay(Pending{Index: h.idx + 5, Kind: RevocationLease, ID: "l1"})
	if c := h.code(issueCmd(lease{id: "l6", parent: "l1"})); c != codeOK {
		t.Fatalf("issuing under a pending revocation: %v", c)
	}
	if r := h.check("l6"); r != ReasonParentInvalid {
		t.Fatalf("l6 under pending revoked l1: %q", r)
	}
	// Bounded: past MaxOverlay targets a push is refused (the caller waits
	// for the apply instead).
	for i := h.f.OverlayLen(); i < MaxOverlay; i++ {
		if !h.f.Overlay(Pending{Index: h.idx + 5, Kind: RevocationLease, ID: fmt.Sprint("x", i)}) {
			t.Fatalf("refused at %d", i)
		}
	}
	if h.f.Overlay(Pending{Index: h.idx + 5, Kind: RevocationLease, ID: "one-too-many"}) {
		t.Fatal("overlay grew past MaxOverlay")
	}
	for i := 0; i < 5 && h.f.OverlayLen() > 0; i++ {
		h.ok(noopCmd())
	}
	if h.f.OverlayLen() != 0 {
		t.Fatal("overlay not emptied")
	}
}

// TestOverlayAll: one entry's revocations go in together; an applied one is
// a no-op; a bad one, or one past MaxOverlay, makes it report false while
// the rest are still installed.
func TestOverlayAll(t *testing.T) {
	t.Parallel()
	h := base(t)
	overlayFixture(h)
	if !h.f.OverlayAll([]Pending{
		{Index: h.idx, Kind: RevocationLease, ID: "l9"}, // applied already
		{Index: h.idx + 1, Kind: RevocationLease, ID: "l1"},
		{Index: h.idx + 1, Kind: RevocationRole, ID: "r"},
	}) {
		t.Fatal("OverlayAll refused two good revocations")
	}
	if h.f.OverlayLen() != 2 || h.check("l1") != ReasonRevoked || h.check("l9") != "" {
		t.Fatalf("overlay %d, l1 %q, l9 %q", h.f.OverlayLen(), h.check("l1"), h.check("l9"))
	}
	if h.f.OverlayAll([]Pending{{Index: h.idx + 1, Kind: "nonsense", ID: "x"}, {Index: h.idx + 2, Kind: RevocationOwner, ID: "o"}}) {
		t.Fatal("OverlayAll reported a bad kind in force")
	}
	if h.f.OverlayLen() != 3 {
		t.Fatalf("overlay %d: the good revocation beside the bad one must be installed", h.f.OverlayLen())
	}
	var many []Pending
	for i := h.f.OverlayLen(); i <= MaxOverlay; i++ {
		many = append(many, Pending{Index: h.idx + 3, Kind: RevocationLease, ID: fmt.Sprint("x", i)})
	}
	if h.f.OverlayAll(many) || h.f.OverlayLen() != MaxOverlay {
		t.Fatalf("past MaxOverlay: overlay %d, want %d and a refusal", h.f.OverlayLen(), MaxOverlay)
	}
}

// TestOverlayRacesApply: whatever Apply does meanwhile, every view taken
// after Overlay returns rejects the lease (run with -race).
func TestOverlayRacesApply(t *testing.T) {
	t.Parallel()
	h := base(t)
	overlayFixture(h)
	const rounds = 200
	revoke := make(chan uint64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for idx := range revoke {
			p := Pending{Index: idx, Kind: RevocationLease, ID: fmt.Sprint("r", idx)}
			if !h.f.Overlay(p) {
				t.Errorf("Overlay(%+v) refused", p)
				continue
			}
			if r := h.f.View().LeaseValid(p.ID, h.now); r != ReasonRevoked && r != ReasonUnknownLease {
				t.Errorf("%s after Overlay returned: %q", p.ID, r)
			}
		}
	}()
	for i := 0; i < rounds; i++ {
		// The writer issues r<k+2> at k+1 and revokes it at k+2 while the
		// pusher installs k+2 concurrently.
		k := h.idx
		revoke <- k + 2
		h.ok(issueCmd(lease{id: fmt.Sprint("r", k+2)}))
		h.ok(revokeLeaseCmd(fmt.Sprint("r", k+2)))
	}
	close(revoke)
	wg.Wait()
	if h.f.OverlayLen() != 0 {
		t.Fatalf("overlay holds %d after every index applied", h.f.OverlayLen())
	}
}
