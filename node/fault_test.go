package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// Fault tests: partitions through the nodetest bridges. Every deadline is
// generous (busy 2-core machine under -race); nothing waits by sleeping.

func issueVia(ctx context.Context, c *nodetest.Cluster, i int, proof *writv1.AppRoleProof) (*writv1.AuthorizeAndIssueResponse, error) {
	resp, err := c.Authz(i, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil {
		return nil, err
	}
	if !resp.Msg.GetDecision().GetAllowed() || resp.Msg.GetCredential() == "" {
		return nil, fmt.Errorf("issue not allowed: %v", resp.Msg.GetDecision())
	}
	return resp.Msg, nil
}

func revokeVia(ctx context.Context, c *nodetest.Cluster, i int, leaseID string) (uint64, error) {
	resp, err := c.Authz(i, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
		Target: &writv1.RevokeRequest_LeaseId{LeaseId: leaseID},
	}))
	if err != nil {
		return 0, err
	}
	return resp.Msg.GetIndex(), nil
}

// verifyOn asks member i about cred with a stale (default) read.
func verifyOn(ctx context.Context, c *nodetest.Cluster, i int, cred string) (*writv1.VerifyResponse, error) {
	resp, err := c.Authz(i, false).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: cred}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// waitAllApplied waits until every running member applied index.
func waitAllApplied(t *testing.T, c *nodetest.Cluster, index uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, i := range c.Running() {
		if _, err := c.Members[i].Node.WaitApplied(ctx, index, false); err != nil {
			t.Fatalf("%s: %v", c.Members[i].ID, err)
		}
	}
}

// TestMinorityPartition: a member cut off from the other two cannot issue
// or revoke, and stops answering reads once max staleness has passed
// (Unavailable, never a stale "active"); the majority keeps issuing and
// revoking; after healing every replica holds the identical state and the
// cut-off member sees what happened without it.
func TestMinorityPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("partition test")
	}
	c := nodetest.New(t, 3, nodetest.Options{HoldTimeout: 2 * time.Second})
	proof := setup(t, c)
	ctx := context.Background()

	old, err := issueVia(ctx, c, 0, proof)
	if err != nil {
		t.Fatal(err)
	}
	waitAllApplied(t, c, old.GetIndex())
	leader := c.Leader()
	minority := (leader + 1) % 3
	other := (leader + 2) % 3
	c.Isolate(minority)

	if _, err := issueVia(ctx, c, minority, proof); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("issue on the cut-off member: want Unavailable, got %v", err)
	}
	if _, err := revokeVia(ctx, c, minority, old.GetLease().GetId()); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("revoke on the cut-off member: want Unavailable, got %v", err)
	}
	nodetest.Eventually(t, 20*time.Second, "the cut-off member fails closed", func() error {
		v, err := verifyOn(ctx, c, minority, old.GetCredential())
		if connect.CodeOf(err) == connect.CodeUnavailable {
			return nil
		}
		return fmt.Errorf("verify answered %v, %v", v, err)
	})
	if _, err := c.Authz(minority, false).Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
		Credential: old.GetCredential(), Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"},
	})); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("authorize on the cut-off member: want Unavailable, got %v", err)
	}

	// The majority keeps issuing through either member, and revokes.
	var fresh []*writv1.AuthorizeAndIssueResponse
	for _, i := range []int{leader, other, leader, other} {
		r, err := issueVia(ctx, c, i, proof)
		if err != nil {
			t.Fatalf("issue on the majority (%s): %v", c.Members[i].ID, err)
		}
		fresh = append(fresh, r)
	}
	if _, err := revokeVia(ctx, c, other, old.GetLease().GetId()); err != nil {
		t.Fatalf("revoke on the majority: %v", err)
	}
	if _, err := verifyOn(ctx, c, minority, old.GetCredential()); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("cut-off member after the revocation: want Unavailable, got %v", err)
	}

	// From the heal on, the member may fail closed for a while, but it must
	// never answer with the state it had before the partition.
	c.Heal()
	nodetest.Eventually(t, 20*time.Second, "the healed member answers again", func() error {
		v, err := verifyOn(ctx, c, minority, old.GetCredential())
		if err != nil {
			return err
		}
		if v.GetActive() || v.GetReason() != "revoked" {
			t.Fatalf("healed member accepts a credential revoked while it was cut off: active=%v reason=%q index=%d", v.GetActive(), v.GetReason(), v.GetAppliedIndex())
		}
		return nil
	})
	c.WaitConverged()
	for _, r := range fresh {
		v, err := verifyOn(ctx, c, minority, r.GetCredential())
		if err != nil || !v.GetActive() {
			t.Fatalf("healed member on a lease issued without it: %v %v", v, err)
		}
	}
	if _, err := issueVia(ctx, c, minority, proof); err != nil {
		t.Fatalf("issue on the healed member: %v", err)
	}
	c.WaitConverged()
}

// TestRevokeWithMemberCutOff: once Revoke returns, every member rejects the
// credential at once (no polling, no min_index) even though one member is cut
// off: the members in contact answer "revoked", the cut-off one fails closed.
func TestRevokeWithMemberCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("partition test")
	}
	for _, tc := range []struct {
		name      string
		cutLeader bool
	}{
		{name: "follower cut off"},
		{name: "leader cut off", cutLeader: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := nodetest.New(t, 3, nodetest.Options{})
			proof := setup(t, c)
			ctx := context.Background()
			issued, err := issueVia(ctx, c, 0, proof)
			if err != nil {
				t.Fatal(err)
			}
			waitAllApplied(t, c, issued.GetIndex())
			leader := c.Leader()
			cut := (leader + 1) % 3
			if tc.cutLeader {
				cut = leader
			}
			via := (cut + 1) % 3
			c.Isolate(cut)
			if _, err := revokeVia(ctx, c, via, issued.GetLease().GetId()); err != nil {
				t.Fatalf("revoke through %s: %v", c.Members[via].ID, err)
			}
			for i, m := range c.Members {
				v, err := verifyOn(ctx, c, i, issued.GetCredential())
				switch {
				case i == cut:
					if connect.CodeOf(err) != connect.CodeUnavailable {
						t.Errorf("cut-off %s: want Unavailable, got %v %v", m.ID, v, err)
					}
				case err != nil:
					t.Errorf("%s: %v", m.ID, err)
				case v.GetActive() || v.GetReason() != "revoked":
					t.Errorf("%s accepts a revoked credential: active=%v reason=%q", m.ID, v.GetActive(), v.GetReason())
				}
			}
			c.Heal()
			c.WaitConverged()
		})
	}
}
