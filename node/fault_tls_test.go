package node_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// TestPartitionUnderClusterTLS: with mutual TLS on the cluster port the
// harness bridges still cut and heal node-to-node traffic (Raft and node RPC
// share the port, so one link per pair carries both): a write goes through
// a follower (forwarded over TLS through a bridge), the isolated leader fails
// closed, the other two elect a leader and keep issuing, and
// after healing every replica converges.
func TestPartitionUnderClusterTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("partition test")
	}
	certs := t.TempDir()
	ca := node.NewTestCA(t, "nodetest cluster CA")
	c := nodetest.New(t, 3, nodetest.Options{
		HoldTimeout: 2 * time.Second,
		ClusterTLS: func(id string) node.ClusterTLS {
			return ca.Issue(t, filepath.Join(certs, id), id)
		},
	})
	proof := setup(t, c)
	ctx := context.Background()
	if st, err := c.Members[0].Node.Status(ctx); err != nil || !st.GetClusterTls() {
		t.Fatalf("cluster TLS not on: %v %v", st.GetClusterTls(), err)
	}
	leader := c.Leader()
	follower := (leader + 1) % 3
	if _, err := issueVia(ctx, c, follower, proof); err != nil {
		t.Fatalf("issue through a follower over cluster TLS: %v", err)
	}

	c.Isolate(leader)
	rest := []int{(leader + 1) % 3, (leader + 2) % 3}
	c.LeaderAmong(rest...)
	// The majority members fail closed until they have a read lease from
	// the new leader (a sync round over its cluster port), then issue again.
	var last *writv1.AuthorizeAndIssueResponse
	for _, i := range rest {
		nodetest.Eventually(t, 20*time.Second, "issue on "+c.Members[i].ID+" after the leader was cut off", func() error {
			r, err := issueVia(ctx, c, i, proof)
			if err != nil {
				return err
			}
			last = r
			return nil
		})
	}
	nodetest.Eventually(t, 20*time.Second, "the cut-off member fails closed", func() error {
		v, err := verifyOn(ctx, c, leader, last.GetCredential())
		if connect.CodeOf(err) == connect.CodeUnavailable {
			return nil
		}
		return fmt.Errorf("verify answered %v, %v", v, err)
	})

	c.Heal()
	nodetest.Eventually(t, 30*time.Second, "the healed member serves the lease issued without it", func() error {
		v, err := verifyOn(ctx, c, leader, last.GetCredential())
		if err != nil {
			return err
		}
		if !v.GetActive() {
			return fmt.Errorf("lease not active on %s: %q", c.Members[leader].ID, v.GetReason())
		}
		return nil
	})
	c.WaitConverged()
}
