package fsm

import (
	"errors"
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

// TestRequiresAndLower: the version a command needs, and what Lower makes
// of it for an older replica.
func TestRequiresAndLower(t *testing.T) {
	t.Parallel()
	stamped := &fsmpb.Command{Header: &fsmpb.Header{MinFsmVersion: 2}, Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}}
	cases := []struct {
		name     string
		cmd      func() *fsmpb.Command
		requires uint32
		lowered  bool // Lower(cmd, 1)
		after    uint32
	}{
		{"issue", func() *fsmpb.Command { return issueCmd(lease{id: "l1"}) }, 1, true, 1},
		{"put policy set without pruning", func() *fsmpb.Command { return keepCmd(0) }, 1, true, 1},
		{"put policy set pruning to 50", func() *fsmpb.Command { return keepCmd(50) }, 2, true, 1},
		{"batch with a pruning put", func() *fsmpb.Command { return batchOf(issueCmd(lease{id: "l1"}), keepCmd(50)) }, 2, true, 1},
		{"header already stamped 2", func() *fsmpb.Command { return stamped }, 2, false, 2},
		{"batch holding a stamped item", func() *fsmpb.Command { return batchOf(keepCmd(50), stamped) }, 2, false, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := tc.cmd()
			if got := Requires(cmd); got != tc.requires {
				t.Errorf("Requires = %d, want %d", got, tc.requires)
			}
			if got := Lower(cmd, 2); !got || Requires(cmd) != tc.requires {
				t.Errorf("Lower(2) = %v and changed the requirement to %d", got, Requires(cmd))
			}
			if got := Lower(cmd, 1); got != tc.lowered {
				t.Errorf("Lower(1) = %v, want %v", got, tc.lowered)
			}
			if got := Requires(cmd); got != tc.after {
				t.Errorf("after Lower(1): Requires = %d, want %d", got, tc.after)
			}
		})
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
