package fsm

import (
	"bytes"
	"slices"
	"testing"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

func versionsOf(v *View, name string) []uint64 {
	var out []uint64
	for _, ps := range v.PolicySetVersions(name) {
		out = append(out, ps.GetVersion())
	}
	return out
}

// TestPolicyHistoryRetention: keep_versions bounds the history per set,
// dropping the oldest, never the active version; other sets are untouched;
// versions keep counting; a rolled-back version records its origin.
func TestPolicyHistoryRetention(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for range 3 {
		h.ok(policyCmd("prod"))
	}
	h.ok(policyCmd("dev"))
	if got := versionsOf(h.f.View(), "prod"); !slices.Equal(got, []uint64{3, 2, 1}) {
		t.Fatalf("versions = %v", got)
	}
	for range 2 {
		c := policyCmd("prod")
		c.GetPutPolicySet().KeepVersions = 2
		h.ok(c)
	}
	v := h.f.View()
	if got := versionsOf(v, "prod"); !slices.Equal(got, []uint64{5, 4}) {
		t.Fatalf("after keep 2: versions = %v", got)
	}
	if ps, _ := v.PolicySet("prod"); ps.GetVersion() != 5 {
		t.Fatalf("active = %v", ps)
	}
	if got := versionsOf(v, "dev"); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("dev versions = %v", got)
	}

	// A rollback is a new version carrying the old text and its origin.
	old, _ := v.PolicySetVersion("prod", 4)
	c := &fsmpb.Command{Payload: &fsmpb.Command_PutPolicySet{PutPolicySet: &fsmpb.PutPolicySet{
		PolicySet:     &fsmpb.PolicySet{Name: "prod", Cedar: old.GetCedar(), RolledBackFrom: 4},
		ExpectVersion: 5, KeepVersions: 2,
	}}}
	if r := h.ok(c); r.GetVersion() != 6 {
		t.Fatalf("rollback version = %d", r.GetVersion())
	}
	v = h.f.View()
	ps, _ := v.PolicySet("prod")
	if ps.GetVersion() != 6 || ps.GetRolledBackFrom() != 4 || ps.GetCedar() != old.GetCedar() {
		t.Fatalf("active after rollback = %v", ps)
	}
	if got := versionsOf(v, "prod"); !slices.Equal(got, []uint64{6, 5}) {
		t.Fatalf("after rollback: versions = %v", got)
	}
	// Retention survives a snapshot round trip.
	h2 := newHarness(t)
	restoreInto(t, h.f, h2.f)
	if got := versionsOf(h2.f.View(), "prod"); !slices.Equal(got, []uint64{6, 5}) {
		t.Fatalf("restored versions = %v", got)
	}
}

func restoreInto(t *testing.T, from, to *FSM) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := from.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := to.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if to.StateHash() != from.StateHash() {
		t.Fatal("restored state differs")
	}
}
