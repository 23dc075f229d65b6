package rpc

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// TestEvidenceCache checks that the cached context.auth is what
// leaseEvidence and evidenceStruct build, that a lease whose role or auth
// method differs from the cached one is rebuilt, and that the cache stays
// bounded.
func TestEvidenceCache(t *testing.T) {
	t.Parallel()
	var c evidenceCache
	l := &fsmpb.Lease{Id: "l_a", Role: "deploy", AuthMethod: "approle"}
	a := c.get(l)
	if diff := cmp.Diff(leaseEvidence(l), a.evidence); diff != "" {
		t.Errorf("evidence (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(evidenceStruct(leaseEvidence(l)), a.st, protocmp.Transform()); diff != "" {
		t.Errorf("struct (-want +got):\n%s", diff)
	}
	if c.get(l) != a {
		t.Error("second get of the same lease rebuilt its evidence")
	}
	changed := &fsmpb.Lease{Id: "l_a", Role: "other", AuthMethod: "approle"}
	if got := c.get(changed).evidence["role"]; got != "other" {
		t.Errorf("role after a change = %v, want other", got)
	}
	for i := range evidenceCacheMax + 1 {
		c.get(&fsmpb.Lease{Id: fmt.Sprintf("l_%d", i)})
	}
	if n := len(c.m); n > evidenceCacheMax {
		t.Errorf("cache holds %d leases, want at most %d", n, evidenceCacheMax)
	}
}
