package fsm

import (
	"errors"
	"fmt"
	"testing"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

func keepCmd(keep uint32) *fsmpb.Command {
	c := policyCmd("prod")
	c.GetPutPolicySet().KeepVersions = keep
	return c
}

func batchOf(cmds ...*fsmpb.Command) *fsmpb.Command {
	return &fsmpb.Command{Payload: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Commands: cmds}}}
}

func skipCountCmd(id string) *fsmpb.Command {
	c := issueCmd(lease{id: id})
	c.GetIssueLease().SkipUnlimitedUseCount = true
	return c
}

// TestRequiresAndLower: the version a command needs, and what Lower makes
// of it for a replica one and two versions older.
func TestRequiresAndLower(t *testing.T) {
	t.Parallel()
	stamped := &fsmpb.Command{Header: &fsmpb.Header{MinFsmVersion: 2}, Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}}
	cases := []struct {
		name     string
		cmd      func() *fsmpb.Command
		requires uint32
		lowered2 bool   // Lower(cmd, 2)
		after2   uint32 // Requires after Lower(cmd, 2)
		lowered1 bool   // then Lower(cmd, 1)
		after1   uint32
	}{
		{"issue", func() *fsmpb.Command { return issueCmd(lease{id: "l1"}) }, 1, true, 1, true, 1},
		{"issue not counting an unlimited secret id", func() *fsmpb.Command { return skipCountCmd("l1") }, 3, true, 1, true, 1},
		{"put policy set without pruning", func() *fsmpb.Command { return keepCmd(0) }, 1, true, 1, true, 1},
		{"put policy set pruning to 50", func() *fsmpb.Command { return keepCmd(50) }, 2, true, 2, true, 1},
		{"batch with a pruning put", func() *fsmpb.Command { return batchOf(issueCmd(lease{id: "l1"}), keepCmd(50)) }, 2, true, 2, true, 1},
		{"batch with both", func() *fsmpb.Command { return batchOf(skipCountCmd("l1"), keepCmd(50)) }, 3, true, 2, true, 1},
		{"header already stamped 2", func() *fsmpb.Command { return stamped }, 2, true, 2, false, 2},
		{"batch holding a stamped item", func() *fsmpb.Command { return batchOf(keepCmd(50), stamped) }, 2, true, 2, false, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := tc.cmd()
			if got := Requires(cmd); got != tc.requires {
				t.Errorf("Requires = %d, want %d", got, tc.requires)
			}
			if got := Lower(cmd, Version); !got || Requires(cmd) != tc.requires {
				t.Errorf("Lower(%d) = %v and changed the requirement to %d", Version, got, Requires(cmd))
			}
			if got := Lower(cmd, 2); got != tc.lowered2 || Requires(cmd) != tc.after2 {
				t.Errorf("Lower(2) = %v, Requires %d; want %v, %d", got, Requires(cmd), tc.lowered2, tc.after2)
			}
			if got := Lower(cmd, 1); got != tc.lowered1 || Requires(cmd) != tc.after1 {
				t.Errorf("Lower(1) = %v, Requires %d; want %v, %d", got, Requires(cmd), tc.lowered1, tc.after1)
			}
		})
	}
}

// TestUnlimitedSecretUses: with skip_unlimited_use_count an issuance leaves
// an unlimited secret id's record untouched and still counts a limited one
// (which still runs out); without it, both are counted, as every replica
// before version 3 does.
func TestUnlimitedSecretUses(t *testing.T) {
	t.Parallel()
	h := base(t)
	h.ok(secretCmd("unlimited", "a", 7, 0, 0))
	h.ok(secretCmd("twice", "a", 8, 2, 0))
	uses := func(acc string) uint32 {
		s, _ := h.f.View().SecretIDByAccessor(acc)
		return s.GetUses()
	}
	issue := func(id, acc string, skip bool) fsmpb.ResultCode {
		c := issueCmd(lease{id: id})
		c.GetIssueLease().ConsumeSecretAccessor = acc
		c.GetIssueLease().SkipUnlimitedUseCount = skip
		return h.code(c)
	}
	if c := issue("l1", "unlimited", false); c != codeOK || uses("unlimited") != 1 {
		t.Fatalf("counted issuance: %v, uses %d", c, uses("unlimited"))
	}
	rec, _ := h.f.View().SecretIDByAccessor("unlimited")
	for i := range 3 {
		if c := issue(fmt.Sprint("u", i), "unlimited", true); c != codeOK {
			t.Fatalf("uncounted issuance %d: %v", i, c)
		}
	}
	if now, _ := h.f.View().SecretIDByAccessor("unlimited"); now != rec || uses("unlimited") != 1 {
		t.Fatalf("an uncounted issuance rewrote the unlimited secret id (uses %d)", uses("unlimited"))
	}
	for i, want := range []fsmpb.ResultCode{codeOK, codeOK, codeDenied} {
		if c := issue(fmt.Sprint("t", i), "twice", true); c != want {
			t.Fatalf("issuance %d with a two-use secret id: %v, want %v", i, c, want)
		}
	}
	if uses("twice") != 2 {
		t.Fatalf("two-use secret id counted %d uses", uses("twice"))
	}
}

// TestPinnedVersionHalts: a replica pinned at version 1 (standing in for an
// older binary) halts on an entry stamped 2 before touching its state, and
// applies the lowered form of the same command.
func TestPinnedVersionHalts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.f = New(Config{Version: 1})
	cmd := keepCmd(50)
	cmd.Header.MinFsmVersion = Requires(cmd)
	data := h.entry(cmd)
	func() {
		defer func() {
			if err, _ := recover().(error); !errors.Is(err, ErrTooOld) {
				t.Fatalf("applying an entry stamped 2 on a version-1 replica: panic %v, want ErrTooOld", err)
			}
		}()
		h.f.Apply(1, data)
	}()
	if h.f.AppliedIndex() != 0 {
		t.Fatalf("applied index %d after a halt", h.f.AppliedIndex())
	}
	cmd = keepCmd(50)
	if !Lower(cmd, 1) {
		t.Fatal("Lower(put policy set, 1) = false")
	}
	cmd.Header.MinFsmVersion = Requires(cmd)
	h.ok(cmd)
	if ps, _ := h.f.View().PolicySet("prod"); ps.GetVersion() != 1 {
		t.Fatalf("policy set after the lowered put: %v", ps)
	}
}
