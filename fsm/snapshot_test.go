package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// randomLog drives h with n random entries (single commands and batches of
// every kind, valid and not) and returns the encoded entries. Epochs and
// versions come from h's own view most of the time, as a proposer's would.
// It returns the entries and h's results.
func randomLog(h *harness, r *rand.Rand, n int) ([][]byte, [][]*fsmpb.Result) {
	identities := []string{"ci/a", "ci/b", "agent/c"}
	roles := []string{"a", "b", "c"}
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	leaseID := func() string { return fmt.Sprint("l", r.IntN(n)) }
	cmd := func() *fsmpb.Command {
		v := h.f.View()
		switch r.IntN(20) {
		case 0:
			c := identityCmd(pick(identities), pick([]string{"prod", "prod", "prod", "dev"}))
			if r.IntN(3) == 0 {
				c.GetPutIdentity().Identity.Status = fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED
			}
			return c
		case 1:
			i := r.IntN(len(roles))
			c := roleCmd(roles[i], identities[i], "prod")
			c.GetPutRole().Role.MaxLiveLeases = uint32(r.IntN(8))
			return c
		case 2:
			return revokeIdentityCmd(pick(identities))
		case 3:
			if r.IntN(4) == 0 {
				return deleteIdentityCmd(pick(identities))
			}
			return deleteRoleCmd(pick(roles))
		case 4:
			if r.IntN(5) == 0 {
				return deletePolicyCmd("prod")
			}
			return policyCmd("prod")
		case 5:
			return secretCmd(fmt.Sprint("acc", r.IntN(20)), pick(roles), byte(r.IntN(20)), uint32(r.IntN(3)), time.Duration(r.IntN(120))*time.Second)
		case 6:
			return renewCmd(leaseID(), time.Duration(1+r.IntN(120))*time.Second, uint64(1+r.IntN(3)))
		case 7:
			switch r.IntN(4) {
			case 0:
				return revokeOwnerCmd(fmt.Sprint("team-", r.IntN(3)))
			case 1:
				return revokeRoleCmd(pick(roles))
			case 2:
				c := revokeLeaseCmd(leaseID())
				c.GetRevokeLease().DescendantsOnly = r.IntN(2) == 0
				c.GetRevokeLease().Completed = !c.GetRevokeLease().DescendantsOnly
				return c
			}
			return revokeLeaseCmd(leaseID())
		case 8:
			return reapCmd(h.now.Add(-time.Duration(r.IntN(60))*time.Second), uint32(r.IntN(5)))
		case 9:
			switch r.IntN(3) {
			case 0:
				return nodeCmd(fmt.Sprint("n", r.IntN(3)))
			case 1:
				return keyCmd(fmt.Sprint("k", r.IntN(5)), byte(r.IntN(5)))
			}
			return noopCmd()
		default:
			i := r.IntN(len(roles))
			l := lease{id: leaseID(), identity: identities[i], role: roles[i], ttl: time.Duration(1+r.IntN(300)) * time.Second}
			if id, ok := v.Identity(l.identity); ok && r.IntN(8) != 0 {
				l.identityEpoch = id.GetEpoch()
			}
			if ro, ok := v.Role(l.role); ok && r.IntN(8) != 0 {
				l.roleEpoch = ro.GetEpoch()
			}
			if ps, ok := v.PolicySet("prod"); ok && r.IntN(8) != 0 {
				l.version = ps.GetVersion()
			}
			if r.IntN(3) == 0 {
				l.parent = leaseID()
			}
			if r.IntN(4) == 0 {
				l.secret = fmt.Sprint("acc", r.IntN(20))
			}
			c := issueCmd(l)
			if r.IntN(10) == 0 {
				c.Header.RequestId = fmt.Sprint("dup-", r.IntN(50)) // replays of earlier requests
			}
			return c
		}
	}
	var (
		log     [][]byte
		results [][]*fsmpb.Result
	)
	for range n {
		h.now = h.now.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
		cmds := []*fsmpb.Command{cmd()}
		if r.IntN(4) == 0 {
			for range r.IntN(20) {
				cmds = append(cmds, cmd())
			}
		}
		log = append(log, h.entry(cmds...))
		results = append(results, h.apply(cmds...))
	}
	return log, results
}

func seedLog(h *harness) ([][]byte, [][]*fsmpb.Result) {
	cmds := []*fsmpb.Command{bootstrapCmd(), identityCmd("ci/a", "prod"), identityCmd("ci/b", "prod"), identityCmd("agent/c", "prod"),
		roleCmd("a", "ci/a", "prod"), roleCmd("b", "ci/b", "prod"), roleCmd("c", "agent/c", "prod"), policyCmd("prod")}
	var (
		log     [][]byte
		results [][]*fsmpb.Result
	)
	for _, c := range cmds {
		log = append(log, h.entry(c))
		results = append(results, []*fsmpb.Result{h.ok(c)})
	}
	return log, results
}

// sameViews compares everything a View lists.
func sameViews(t *testing.T, a, b *View) {
	t.Helper()
	diff(t, a.Identities(), b.Identities())
	diff(t, a.Roles(), b.Roles())
	diff(t, a.SecretIDs(""), b.SecretIDs(""))
	diff(t, a.PolicySets(), b.PolicySets())
	diff(t, a.SigningKeys(), b.SigningKeys())
	diff(t, a.Nodes(), b.Nodes())
	diff(t, a.Leases("", 0), b.Leases("", 0))
	for i := range 3 {
		if owner := fmt.Sprint("team-", i); a.OwnerEpoch(owner) != b.OwnerEpoch(owner) {
			t.Fatalf("owner %s: epoch %d vs %d", owner, a.OwnerEpoch(owner), b.OwnerEpoch(owner))
		}
	}
	if a.ClusterID() != b.ClusterID() || !bytes.Equal(a.HMACKey(), b.HMACKey()) || !bytes.Equal(a.AdminTokenSHA256(), b.AdminTokenSHA256()) {
		t.Fatal("cluster facts differ")
	}
	for _, ps := range a.PolicySets() {
		for v := uint64(1); v <= ps.GetVersion(); v++ {
			x, _ := a.PolicySetVersion(ps.GetName(), v)
			y, _ := b.PolicySetVersion(ps.GetName(), v)
			diff(t, x, y)
		}
	}
}

// TestDeterminism: two FSMs fed the same random log return the same results
// and end identical; a snapshot taken mid-log and restored into a fresh FSM
// is identical too, and stays identical as the rest of the log is applied.
func TestDeterminism(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			a := newHarness(t)
			log, results := seedLog(a)
			moreLog, moreResults := randomLog(a, rand.New(rand.NewPCG(seed, 7)), 1500)
			log, results = append(log, moreLog...), append(results, moreResults...)

			b, c := newHarness(t), newHarness(t)
			mid := uint64(len(log) / 2)
			var snap *Snapshot
			okResults := 0
			for i, data := range log {
				idx := uint64(i + 1)
				rb := b.f.Apply(idx, data)
				diff(t, results[i], rb)
				for _, r := range rb {
					if r.GetCode() == codeOK {
						okResults++
					}
				}
				if idx == mid {
					snap = b.f.Snapshot()
				}
				if idx == mid+1 {
					// Written after b applied one more entry: it must not show.
					var buf bytes.Buffer
					if _, err := snap.WriteTo(&buf); err != nil {
						t.Fatal(err)
					}
					if err := c.f.Restore(&buf); err != nil {
						t.Fatal(err)
					}
					if c.f.AppliedIndex() != mid {
						t.Fatalf("restored at %d, want %d", c.f.AppliedIndex(), mid)
					}
				}
				if idx > mid {
					diff(t, rb, c.f.Apply(idx, data))
				}
			}
			if okResults < len(log)/2 {
				t.Fatalf("only %d of the log's results were OK: the random log exercises too little", okResults)
			}
			if a.f.StateHash() != b.f.StateHash() {
				t.Fatal("replicas fed the same log diverged")
			}
			if c.f.StateHash() != a.f.StateHash() {
				t.Fatal("the replica restored mid-log diverged")
			}
			sameViews(t, a.f.View(), c.f.View())
			if len(a.f.View().Leases("", 0)) == 0 {
				t.Fatal("no leases at the end: the random log exercises too little")
			}
		})
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedLog(h)
	randomLog(h, rand.New(rand.NewPCG(9, 9)), 300)
	h.now = h.now.Add(time.Second)
	s := h.f.Snapshot()
	var one, two bytes.Buffer
	n, err := s.WriteTo(&one)
	if err != nil || n != int64(one.Len()) {
		t.Fatalf("WriteTo: %d, %v (wrote %d)", n, err, one.Len())
	}
	// Later entries do not change what an earlier snapshot writes.
	hash := h.f.StateHash()
	h.ok(identityCmd("late", "prod"))
	if _, err := s.WriteTo(&two); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Fatal("a snapshot changed after it was taken")
	}
	r := newHarness(t)
	if err := r.f.Restore(&one); err != nil {
		t.Fatal(err)
	}
	if r.f.StateHash() != hash || r.f.AppliedIndex() != s.Index() {
		t.Fatal("restored state differs from the snapshot's")
	}
	// A restore replaces everything, including what the target held.
	if err := h.f.Restore(bytes.NewReader(two.Bytes())); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.f.View().Identity("late"); ok || h.f.StateHash() != hash {
		t.Fatal("restore kept the old state")
	}
}

// TestSnapshotReadableByVersion3: a snapshot's header passes the check a
// version-3 binary makes (header version 1..3), since version 4 changed no
// state; a follower on the old binary can then install it mid-upgrade.
func TestSnapshotReadableByVersion3(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedLog(h)
	var buf bytes.Buffer
	if _, err := h.f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	_, _, hdr, err := readSnapshot(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if v := hdr.GetFsmVersion(); v == 0 || v > 3 {
		t.Fatalf("snapshot header says FSM version %d: a version-3 binary refuses it", v)
	}
}

func TestRestoreRejectsBadStreamsAndKeepsState(t *testing.T) {
	t.Parallel()
	src := base(t)
	src.ok(issueCmd(lease{id: "l1"}))
	src.ok(secretCmd("acc", "a", 9, 1, 0))
	var snap bytes.Buffer
	if _, err := src.f.Snapshot().WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	good := snap.Bytes()

	h := base(t)
	h.ok(identityCmd("mine", "prod"))
	hash, idx := h.f.StateHash(), h.f.AppliedIndex()
	expectRejected := func(t *testing.T, name string, stream []byte) {
		t.Helper()
		if err := h.f.Restore(bytes.NewReader(stream)); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: %v, want ErrBadSnapshot", name, err)
		}
		if h.f.StateHash() != hash || h.f.AppliedIndex() != idx {
			t.Fatalf("%s: a failed restore changed the state", name)
		}
	}
	// Every truncation, including at each record boundary.
	for cut := range len(good) {
		expectRejected(t, fmt.Sprintf("cut at %d of %d", cut, len(good)), good[:cut])
	}
	expectRejected(t, "trailing data", append(append([]byte(nil), good...), 0))
	newer := &fsmpb.SnapshotHeader{FsmVersion: Version + 1}
	var hdr bytes.Buffer
	(&streamWriter{w: &hdr}).msg(newer)
	expectRejected(t, "newer version", append(hdr.Bytes(), 0))
	expectRejected(t, "garbage", []byte("not a snapshot at all"))
	// Flipped bytes either fail cleanly or restore something; never panic.
	for i := range len(good) {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x5a
		f := New(Config{})
		_ = f.Restore(bytes.NewReader(bad))
	}
}

func TestRestoreNotifiesPolicyChanges(t *testing.T) {
	t.Parallel()
	src := base(t)
	src.ok(policyCmd("prod")) // prod v2
	var snap bytes.Buffer
	if _, err := src.f.Snapshot().WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	h := base(t)
	h.ok(policyCmd("staging"))
	h.events = nil
	if err := h.f.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range h.events {
		got = append(got, fmt.Sprintf("%s v%d deleted=%v", ev.ps.GetName(), ev.ps.GetVersion(), ev.deleted))
	}
	diff(t, []string{"prod v2 deleted=false", "staging v1 deleted=true"}, got)
}
