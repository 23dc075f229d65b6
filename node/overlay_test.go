package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// TestRevokePushedToLaggingFollower: the link between the leader and one
// follower is slowed so that the follower has NOT applied the revocation
// when Revoke (through the other follower) returns; the revocation pushed
// to it must already be in force there: Verify on it rejects with the
// revocation's own reason, its FSM still below the index. Once the link is
// restored it applies the entry and the overlay empties, still rejecting.
func TestRevokePushedToLaggingFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster fault test")
	}
	// Slow timings so that a 300ms link delay is lag, not an election.
	c := nodetest.New(t, 3, nodetest.Options{
		MaxStaleness: 4 * time.Second,
		Raft:         &node.RaftTuning{HeartbeatTimeout: 2 * time.Second, ElectionTimeout: 2 * time.Second, LeaderLeaseTimeout: time.Second},
	})
	proof := setup(t, c)
	ctx := context.Background()
	leader := c.Leader()
	via, lag := (leader+1)%3, (leader+2)%3
	lagFSM := c.Members[lag].Node.FSM()
	for _, tc := range []struct {
		name   string
		target func(l *writv1.AuthorizeAndIssueResponse) *writv1.RevokeRequest
		reason string
	}{
		{"lease", func(l *writv1.AuthorizeAndIssueResponse) *writv1.RevokeRequest {
			return &writv1.RevokeRequest{Target: &writv1.RevokeRequest_LeaseId{LeaseId: l.GetLease().GetId()}}
		}, fsm.ReasonRevoked},
		{"identity", func(*writv1.AuthorizeAndIssueResponse) *writv1.RevokeRequest {
			return &writv1.RevokeRequest{Target: &writv1.RevokeRequest_Identity{Identity: "ci/deploy-api"}}
		}, fsm.ReasonIdentityRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cred string
			var idx uint64
			// The follower must not have applied the entry by the time Verify
			// answers; on a stalled machine it may, and then that try proves
			// nothing about the overlay and is repeated.
			for try := 0; ; try++ {
				if try == 5 {
					t.Fatal("the lagging follower applied the revocation before Verify every time: no proof of the push")
				}
				c.SetDelay(leader, lag, 0)
				issued := issueRetryingT(t, c, lag, proof)
				waitAllApplied(t, c, issued.GetIndex())
				c.SetDelay(leader, lag, 300*time.Millisecond)
				resp, err := c.Authz(via, true).Revoke(ctx, connect.NewRequest(tc.target(issued)))
				if err != nil {
					t.Fatalf("revoke: %v", err)
				}
				cred, idx = issued.GetCredential(), resp.Msg.GetIndex()
				v, err := verifyOn(ctx, c, lag, cred)
				if applied := lagFSM.AppliedIndex(); applied >= idx {
					t.Logf("try %d: follower applied %d >= %d before Verify answered", try, applied, idx)
					continue
				}
				if err != nil {
					t.Fatalf("verify on the lagging follower: %v", err)
				}
				if v.GetActive() || v.GetReason() != tc.reason {
					t.Fatalf("lagging follower right after Revoke returned: active=%v reason=%q, want %q", v.GetActive(), v.GetReason(), tc.reason)
				}
				if lagFSM.OverlayLen() == 0 {
					t.Fatal("rejected without the overlay while not applied?")
				}
				break
			}
			c.SetDelay(leader, lag, 0)
			nodetest.Eventually(t, 20*time.Second, "lagging follower applies the revocation and drops its overlay", func() error {
				if a, n := lagFSM.AppliedIndex(), lagFSM.OverlayLen(); a < idx || n != 0 {
					return fmt.Errorf("applied %d (want >= %d), overlay holds %d", a, idx, n)
				}
				return nil
			})
			for i := range c.Members {
				v, err := verifyOn(ctx, c, i, cred)
				if err != nil || v.GetActive() || v.GetReason() != tc.reason {
					t.Fatalf("%s after the apply: %v %v", c.Members[i].ID, v, err)
				}
			}
		})
	}
}

// issueRetryingT issues through member i, retrying while it fails closed.
func issueRetryingT(t *testing.T, c *nodetest.Cluster, i int, proof *writv1.AppRoleProof) *writv1.AuthorizeAndIssueResponse {
	t.Helper()
	var out *writv1.AuthorizeAndIssueResponse
	nodetest.Eventually(t, 20*time.Second, "issue", func() error {
		resp, err := issueVia(context.Background(), c, i, proof)
		if err != nil && connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("issue: %v", err)
		}
		out = resp
		return err
	})
	return out
}

// TestRevocationPushInput: a push is node RPC on the cluster port: without
// the node token it is refused and changes nothing; bad input is
// InvalidArgument; a push for an applied index is a no-op; a push ahead of
// the log is installed and answered at once (no wait for the apply) and
// from then on the node rejects the lease.
func TestRevocationPushInput(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := nodetest.New(t, 3, nodetest.Options{})
	proof := setup(t, c)
	issued := issueRetryingT(t, c, 1, proof)
	waitAllApplied(t, c, issued.GetIndex())
	from, to := c.Members[0].Node, c.Members[1]
	lease := issued.GetLease().GetId()
	push := func(index uint64, kind, target string, token bool) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := from.WaitAppliedOn(ctx, to.RaftAddr, &writv1.WaitAppliedRequest{
			Index: index, Revocation: &writv1.PendingRevocation{Kind: kind, Target: target},
		}, token)
		return err
	}
	ahead := to.Node.FSM().AppliedIndex() + 1_000_000 // never applied during the test
	for _, tc := range []struct {
		name        string
		index       uint64
		kind, id    string
		token       bool
		code        connect.Code
		overlayWant int
	}{
		{"no token", ahead, fsm.RevocationLease, lease, false, connect.CodeUnauthenticated, 0},
		{"unknown kind", ahead, "signing_key", lease, true, connect.CodeInvalidArgument, 0},
		{"no target", ahead, fsm.RevocationLease, "", true, connect.CodeInvalidArgument, 0},
		{"no index", 0, fsm.RevocationLease, lease, true, connect.CodeInvalidArgument, 0},
		{"already applied", issued.GetIndex(), fsm.RevocationLease, lease, true, 0, 0},
		{"ahead of the log", ahead, fsm.RevocationLease, lease, true, 0, 1},
	} {
		err := push(tc.index, tc.kind, tc.id, tc.token)
		if connect.CodeOf(err) != tc.code && !(tc.code == 0 && err == nil) {
			t.Fatalf("%s: %v, want code %v", tc.name, err, tc.code)
		}
		if n := to.Node.FSM().OverlayLen(); n != tc.overlayWant {
			t.Fatalf("%s: overlay holds %d, want %d", tc.name, n, tc.overlayWant)
		}
	}
	v, err := verifyOn(context.Background(), c, 1, issued.GetCredential())
	if err != nil || v.GetActive() || v.GetReason() != fsm.ReasonRevoked {
		t.Fatalf("after the push: %v %v", v, err)
	}
	if v, err := verifyOn(context.Background(), c, 0, issued.GetCredential()); err != nil || !v.GetActive() {
		t.Fatalf("a node nobody pushed to: %v %v", v, err)
	}
}

// TestRevokeConfirmations: a Revoke through a follower sends nothing to the
// leader (it answered the forwarded write from its own apply: "answered"),
// and nothing to a voter the leader saw acknowledge the entry's append
// ("stored": its log store enforced the announced revocation, announce.go);
// the other follower gets the push. Through the leader, the follower whose
// append made the commit is always "stored", so at most one is pushed.
// Either way every node rejects the lease once Revoke returns.
func TestRevokeConfirmations(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := nodetest.New(t, 3, nodetest.Options{})
	proof := setup(t, c)
	ctx := context.Background()
	leader := c.Leader()
	// The leader names holders only once every server reported a version
	// whose log store enforces announcements.
	lead := c.Members[leader].Node
	nodetest.Eventually(t, 30*time.Second, "every server's FSM version report", func() error {
		if v := lead.ClusterFSMVersion(); v < fsm.Version {
			return fmt.Errorf("cluster FSM version %d, want %d", v, fsm.Version)
		}
		return nil
	})
	const revocations = 8
	for _, tc := range []struct {
		name     string
		via      int
		answered float64 // per revocation
		peers    float64 // pushed + stored, per revocation
		minStore float64 // over all revocations
	}{
		{"through a follower", (leader + 1) % 3, 1, 1, 0},
		{"through the leader", leader, 0, 2, revocations},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := c.Members[tc.via].Node.Registry()
			before := confirmations(t, reg)
			for range revocations {
				issued := issueRetryingT(t, c, tc.via, proof)
				waitAllApplied(t, c, issued.GetIndex())
				if _, err := c.Authz(tc.via, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
					Target: &writv1.RevokeRequest_LeaseId{LeaseId: issued.GetLease().GetId()},
				})); err != nil {
					t.Fatalf("revoke: %v", err)
				}
				for i := range c.Members {
					v, err := verifyOn(ctx, c, i, issued.GetCredential())
					if err != nil || v.GetActive() {
						t.Fatalf("%s after Revoke returned: %v %v", c.Members[i].ID, v, err)
					}
				}
			}
			if c.Leader() != leader {
				t.Skip("leadership moved during the revokes: the counts describe another path")
			}
			after := confirmations(t, reg)
			d := func(how string) float64 { return after[how] - before[how] }
			t.Logf("confirmations: answered %v, stored %v, pushed %v", d("answered"), d("stored"), d("pushed"))
			if d("answered") != tc.answered*revocations || d("pushed")+d("stored") != tc.peers*revocations ||
				d("stored") < tc.minStore || d("waited") != 0 || d("unconfirmed") != 0 {
				t.Errorf("confirmations %v, want answered %v and pushed+stored %v per revocation, stored at least %v in all",
					after, tc.answered, tc.peers, tc.minStore)
			}
		})
	}
}

// TestLogFloorGatesStaleReads: a restarted node's floor is at least the
// last index its log held, which covers every append it acknowledged (and so
// every announced revocation it may have been named a holder of) before it
// went down; and while its FSM is below the floor it answers no stale read.
func TestLogFloorGatesStaleReads(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := nodetest.New(t, 3, nodetest.Options{})
	proof := setup(t, c)
	ctx := context.Background()
	f := (c.Leader() + 1) % 3
	issued := issueRetryingT(t, c, f, proof)
	waitAllApplied(t, c, issued.GetIndex())
	last := c.Members[f].Node.LastLogIndex()
	c.Kill(f)
	c.Restart(f)
	n := c.Members[f].Node
	if got := n.LogFloor(); got < last {
		t.Fatalf("floor after restart %d, below the %d its log held", got, last)
	}
	nodetest.Eventually(t, 20*time.Second, "a stale read after the restart", func() error {
		v, err := verifyOn(ctx, c, f, issued.GetCredential())
		if err == nil && !v.GetActive() {
			err = fmt.Errorf("lease not active: %v", v)
		}
		return err
	})
	n.SetLogFloor(n.LocalView().Index() + 1000)
	if _, err := verifyOn(ctx, c, f, issued.GetCredential()); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("verify below the floor: %v, want Unavailable", err)
	}
	n.SetLogFloor(0)
	if v, err := verifyOn(ctx, c, f, issued.GetCredential()); err != nil || !v.GetActive() {
		t.Fatalf("verify once the floor is met: %v %v", v, err)
	}
}

// confirmations reads writ_revocation_confirmations_total by "how".
func confirmations(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "writ_revocation_confirmations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "how" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
