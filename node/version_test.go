package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// TestFSMVersionGate is a rolling upgrade across an FSM version. Member n3
// stands in for a server of the previous binary (FSM version 1: it halts,
// crashing this test, on any entry stamped 2). While it is in the
// configuration the leader counts the cluster as version 1, stamps entries
// for it and lowers policy puts to their version-1 form: n3 applies every
// entry, the history is not pruned, and every replica stays identical.
// Restarted at the current version, n3 reports it with its next freshness
// round, and the first put after that prunes the history on every replica.
// A server that then goes silent counts as version 1 again until it reports.
func TestFSMVersionGate(t *testing.T) {
	if fsm.Version < 2 {
		t.Skip("needs FSM version 2 (keep_versions)")
	}
	c := nodetest.New(t, 3, nodetest.Options{Configure: func(m *nodetest.Member, cfg *node.Config) {
		if m.ID == "n3" {
			cfg.FSMVersion = 1
		}
	}})
	c.WaitVoters(3)
	proof := setup(t, c) // prod v1, and an unlimited secret id
	ctx := context.Background()
	leader := func() *node.Node { return c.Members[c.Leader()].Node }
	// Issuing through every node: below version 3 the leader lowers each
	// IssueLease to the counted form, so every replica counts the uses.
	issueEverywhere := func() {
		t.Helper()
		for i := range 3 {
			resp, err := c.Authz(i, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
			if err != nil || !resp.Msg.GetDecision().GetAllowed() {
				t.Fatalf("issue through %s: %v %v", c.Members[i].ID, err, resp.Msg.GetDecision())
			}
		}
		c.WaitConverged()
	}
	secretUses := func(want uint32) {
		t.Helper()
		for m := range 3 {
			secrets := c.Members[m].Node.FSM().View().SecretIDs("deploy-api")
			if len(secrets) != 1 || secrets[0].GetUses() != want {
				t.Fatalf("%s: secret ids %v, want one with %d uses", c.Members[m].ID, secrets, want)
			}
		}
	}
	if v := leader().ClusterFSMVersion(); v != 1 {
		t.Fatalf("cluster FSM version %d with n3 at version 1", v)
	}
	if st, err := leader().Status(ctx); err != nil || st.GetClusterFsmVersion() != 1 {
		t.Fatalf("leader's status: cluster FSM version %d (%v), want 1", st.GetClusterFsmVersion(), err)
	}
	// The history keeps 50 versions (rpc.PolicyHistoryVersions) when puts
	// prune it; put past that, from a follower too.
	const puts = 52
	for i := range puts {
		_, err := c.Admin(i%3).PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{
			Name: "prod", Cedar: fmt.Sprintf("%s\n// revision %d\n", testPolicy, i),
		}}))
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	c.WaitConverged()
	issueEverywhere()
	secretUses(3)
	versions := func(m int) int { return len(c.Members[m].Node.FSM().View().PolicySetVersions("prod")) }
	for m := range 3 {
		if got := versions(m); got != puts+1 {
			t.Fatalf("%s holds %d versions of prod after %d puts at cluster version 1, want %d (no pruning)", c.Members[m].ID, got, puts+1, puts+1)
		}
	}

	// n3 is upgraded: restarted at the current version.
	c.Kill(2)
	c.RestartWith(2, func(cfg *node.Config) { cfg.FSMVersion = 0 })
	nodetest.Eventually(t, 20*time.Second, "the leader counts every server at the current version", func() error {
		if v := leader().ClusterFSMVersion(); v != fsm.Version {
			return fmt.Errorf("cluster FSM version %d", v)
		}
		return nil
	})
	if _, err := c.Admin(0).PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{
		Name: "prod", Cedar: testPolicy + "\n// upgraded\n",
	}})); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged()
	for m := range 3 {
		if got := versions(m); got != 50 {
			t.Errorf("%s holds %d versions of prod after the put at version %d, want 50", c.Members[m].ID, got, fsm.Version)
		}
	}
	// At version 3 an unlimited secret id is no longer counted, on any
	// replica.
	issueEverywhere()
	secretUses(3)

	// A server that stops reporting (down, or back on a binary that does
	// not report) counts as version 1 once its report is older than twice
	// max staleness: it may come back on an older binary.
	down := (c.Leader() + 1) % 3
	c.Kill(down)
	nodetest.Eventually(t, 20*time.Second, "a silent server counts as version 1", func() error {
		if v := leader().ClusterFSMVersion(); v != 1 {
			return fmt.Errorf("cluster FSM version %d with %s down", v, c.Members[down].ID)
		}
		return nil
	})
	c.Restart(down)
	nodetest.Eventually(t, 20*time.Second, "the restarted server reports again", func() error {
		if v := leader().ClusterFSMVersion(); v != fsm.Version {
			return fmt.Errorf("cluster FSM version %d", v)
		}
		return nil
	})
}
