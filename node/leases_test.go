package node_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/node/nodetest"
	"github.com/writ-dev/writ/rpc"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// bulkLeases loads n live leases of the setup identity straight through the
// leader's proposer, 512 per entry with a few entries in flight: what a busy
// cluster would have issued, without paying for n RPCs and n Cedar
// decisions. It returns their ids.
func bulkLeases(t testing.TB, c *nodetest.Cluster, n int, ttl time.Duration) []string {
	t.Helper()
	return bulkLeasesPrefix(t, c, n, ttl, "")
}

// bulkLeasesPrefix is bulkLeases with ids that start with prefix.
func bulkLeasesPrefix(t testing.TB, c *nodetest.Cluster, n int, ttl time.Duration, prefix string) []string {
	t.Helper()
	leader := c.Members[c.Leader()].Node
	view := leader.LocalView()
	ident, _ := view.Identity("ci/deploy-api")
	role, _ := view.Role("deploy-api")
	ps, _ := view.PolicySet("prod")
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("l_bulk%s_%07d", prefix, i)
	}
	ctx := context.Background()
	var g errgroup.Group
	g.SetLimit(4)
	for start := 0; start < n; start += 512 {
		chunk := ids[start:min(start+512, n)]
		g.Go(func() error {
			cmds := make([]*fsmpb.Command, len(chunk))
			for j, id := range chunk {
				cmds[j] = &fsmpb.Command{
					Header: &fsmpb.Header{RequestId: "bulk-" + id},
					Payload: &fsmpb.Command_IssueLease{IssueLease: &fsmpb.IssueLease{Lease: &fsmpb.Lease{
						Id: id, Identity: ident.GetId(), IdentityEpoch: ident.GetEpoch(), Role: role.GetName(), RoleEpoch: role.GetEpoch(),
						Scope:     &fsmpb.Scope{Actions: []string{"deploy"}, Resources: []*fsmpb.Resource{{Type: "Deployment", Id: "api-prod"}}},
						PolicySet: ps.GetName(), PolicyVersion: ps.GetVersion(), DecisionId: "d_bulk", AuthMethod: "approle",
					}, TtlNanos: int64(ttl)}},
				}
			}
			results, err := leader.Propose(ctx, cmds, rpc.ProposeOptions{})
			if err != nil {
				return err
			}
			for _, r := range results {
				if r.GetCode() != fsmpb.ResultCode_RESULT_CODE_OK {
					return fmt.Errorf("bulk issue: %v %s", r.GetCode(), r.GetMessage())
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// mintFor signs a credential for a stored lease with the cluster's key, as
// the issuing node would have.
func mintFor(t testing.TB, view *fsm.View, id string) string {
	t.Helper()
	l, ok := view.Lease(id)
	if !ok {
		t.Fatalf("lease %s not stored", id)
	}
	tok, err := credential.Mint(view.SigningKeys()[0], credential.Claims{
		Issuer: "writ", Subject: l.GetIdentity(), Audience: []string{"writ"}, ID: l.GetId(),
		IssuedAt: time.Unix(0, l.GetIssuedUnixNano()), Expiry: time.Unix(0, l.GetExpiresUnixNano()),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestRevokeIdentityHoldingManyLeases: an identity holds many leases (2,000
// here; 100,000 with WRIT_BIG_LEASES=100000, see make test-leases-big); one
// Revoke commits one entry, and once it returns every node rejects every one
// of them, with no min_index.
func TestRevokeIdentityHoldingManyLeases(t *testing.T) {
	n := 2000
	if s := os.Getenv("WRIT_BIG_LEASES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("WRIT_BIG_LEASES=%q", s)
		}
	}
	c := nodetest.New(t, 3, nodetest.Options{})
	setup(t, c)
	start := time.Now()
	ids := bulkLeases(t, c, n, time.Hour)
	t.Logf("loaded %d leases in %s", n, time.Since(start).Round(time.Millisecond))
	c.WaitConverged()
	ctx := context.Background()

	sample := []string{ids[0], ids[n/2], ids[n-1]}
	creds := make([]string, len(sample))
	for i, id := range sample {
		creds[i] = mintFor(t, c.Members[0].Node.LocalView(), id)
	}
	dry, err := c.Authz(1, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
		Target: &writv1.RevokeRequest_Identity{Identity: "ci/deploy-api"}, DryRun: true,
	}))
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if dry.Msg.GetLiveLeases() != uint64(n) {
		t.Fatalf("dry run: %v %v, want %d live leases", dry.Msg, err, n)
	}
	before := c.Members[0].Node.FSM().AppliedIndex()

	start = time.Now()
	resp, err := c.Authz(2, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
		Target: &writv1.RevokeRequest_Identity{Identity: "ci/deploy-api"}, Reason: "leaked",
	}))
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	t.Logf("revoke of %d leases returned in %s", n, time.Since(start).Round(time.Microsecond))
	// One entry: the node's revocation history shows exactly one event
	// after the state we loaded, at the index Revoke returned.
	b := c.Members[0].Node.FSM().Revocations(before, 0)
	if len(b.Events) != 1 || b.Events[0].Index != resp.Msg.GetIndex() || b.Events[0].Kind != fsm.RevocationIdentity {
		t.Fatalf("revocations after %d: %+v (revoke index %d)", before, b.Events, resp.Msg.GetIndex())
	}
	now := time.Now()
	for i, m := range c.Members {
		view := m.Node.LocalView() // no min_index: Revoke has returned
		for _, id := range ids {
			if _, reason := view.CheckLease(id, now); reason != fsm.ReasonIdentityRevoked {
				t.Fatalf("%s: lease %s: %q after Revoke returned", m.ID, id, reason)
			}
		}
		for _, cred := range creds {
			_, err := c.Authz(i, false).Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
				Credential: cred, Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"},
			}))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("%s: authorize after revoke: %v", m.ID, err)
			}
		}
	}
}

// delegationSetup lets the setup role delegate two links deep and allows
// every call_tool on tools (deploy keeps needing a ticket).
func delegationSetup(t testing.TB, c *nodetest.Cluster, proof *writv1.AppRoleProof) {
	t.Helper()
	ctx := context.Background()
	admin := c.Admin(0)
	if _, err := admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: testPolicy + `
@id("delegated-deploys")
permit (principal, action == Action::"deploy", resource)
when { context has delegation && context.delegation.depth <= 2 };
`}})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
		Name: "deploy-api", Environment: "prod", Identity: "ci/deploy-api", AuthMethods: []string{"approle"}, RoleId: proof.GetRoleId(),
		DefaultTtlSeconds: 600, MaxTtlSeconds: 3600, MaxDelegationDepth: 2,
	}})); err != nil {
		t.Fatal(err)
	}
}

func delegate(t testing.TB, c *nodetest.Cluster, i int, cred string, ttl int64) *writv1.DelegateResponse {
	t.Helper()
	resp, err := c.Lease(i).Delegate(context.Background(), connect.NewRequest(&writv1.DelegateRequest{
		Credential: cred,
		Intent:     &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"}, TtlSeconds: ttl},
	}))
	if err != nil {
		t.Fatalf("delegate through %s: %v", c.Members[i].ID, err)
	}
	if !resp.Msg.GetDecision().GetAllowed() {
		t.Fatalf("delegate denied: %v", resp.Msg.GetDecision())
	}
	return resp.Msg
}

func verifyReason(t testing.TB, c *nodetest.Cluster, i int, cred string) string {
	t.Helper()
	v, err := c.Authz(i, false).Verify(context.Background(), connect.NewRequest(&writv1.VerifyRequest{Credential: cred}))
	if err != nil {
		t.Fatalf("verify on %s: %v", c.Members[i].ID, err)
	}
	return v.Msg.GetReason()
}

// TestRevokeParentRejectsDescendants: a root lease delegates a child through
// one node and the child a grandchild through another; revoking the
// grandchild's subtree root (the child's descendants) and then the root
// itself is rejected for every descendant on every node once Revoke returns.
func TestRevokeParentRejectsDescendants(t *testing.T) {
	c := nodetest.New(t, 3, nodetest.Options{})
	proof := setup(t, c)
	delegationSetup(t, c, proof)
	ctx := context.Background()
	root, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil || root.Msg.GetCredential() == "" {
		t.Fatalf("issue root: %v %v", root, err)
	}
	child := delegate(t, c, 1, root.Msg.GetCredential(), 120)
	grandchild := delegate(t, c, 2, child.GetCredential(), 30)
	if grandchild.GetLease().GetDepth() != 2 || grandchild.GetLease().GetParent() != child.GetLease().GetId() {
		t.Fatalf("grandchild %v", grandchild.GetLease())
	}
	// Depth 3 is beyond the role's limit of 2.
	_, err = c.Lease(0).Delegate(ctx, connect.NewRequest(&writv1.DelegateRequest{Credential: grandchild.GetCredential(),
		Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"}}}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("delegation beyond the depth limit: %v", err)
	}
	// Outside the parent's scope.
	_, err = c.Lease(0).Delegate(ctx, connect.NewRequest(&writv1.DelegateRequest{Credential: child.GetCredential(),
		Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "billing-prod"}}}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("delegation outside the parent's scope: %v", err)
	}

	dry, err := c.Authz(1, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
		Target: &writv1.RevokeRequest_LeaseId{LeaseId: root.Msg.GetLease().GetId()}, DryRun: true,
	}))
	if err != nil || dry.Msg.GetLiveLeases() != 3 {
		t.Fatalf("dry run of the root: %v %v", dry, err)
	}
	// Revoke what the child delegated: the child stays, the grandchild goes.
	if _, err := c.Authz(1, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
		Target: &writv1.RevokeRequest_Subtree{Subtree: child.GetLease().GetId()},
	})); err != nil {
		t.Fatal(err)
	}
	for i := range c.Members {
		if r := verifyReason(t, c, i, child.GetCredential()); r != "" {
			t.Fatalf("%s: child after its subtree was revoked: %q", c.Members[i].ID, r)
		}
		if r := verifyReason(t, c, i, grandchild.GetCredential()); r != fsm.ReasonParentInvalid {
			t.Fatalf("%s: grandchild after its parent's subtree was revoked: %q", c.Members[i].ID, r)
		}
	}
	// Revoke the root through a third node: everything below goes at once.
	if _, err := c.Authz(2, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
		Target: &writv1.RevokeRequest_LeaseId{LeaseId: root.Msg.GetLease().GetId()},
	})); err != nil {
		t.Fatal(err)
	}
	for i := range c.Members {
		if r := verifyReason(t, c, i, root.Msg.GetCredential()); r != fsm.ReasonRevoked {
			t.Fatalf("%s: root: %q", c.Members[i].ID, r)
		}
		if r := verifyReason(t, c, i, child.GetCredential()); r != fsm.ReasonParentInvalid {
			t.Fatalf("%s: child after the root was revoked: %q", c.Members[i].ID, r)
		}
		_, err := c.Authz(i, false).Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
			Credential: child.GetCredential(), Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"},
		}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("%s: authorize with the child: %v", c.Members[i].ID, err)
		}
	}
}

// TestBudgetsHoldAcrossNodes: many callers on all three nodes issue at once
// against an identity budget of 7 and a role budget of 9; Apply enforces
// them, so exactly 7 succeed and the rest get ResourceExhausted. Revoking
// one frees exactly one slot.
func TestBudgetsHoldAcrossNodes(t *testing.T) {
	c := nodetest.New(t, 3, nodetest.Options{})
	proof := setup(t, c)
	ctx := context.Background()
	admin := c.Admin(0)
	if _, err := admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
		Id: "ci/deploy-api", Kind: "ci_job", Owner: "team-platform", Environment: "prod", MaxLiveLeases: 7,
	}})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
		Name: "deploy-api", Environment: "prod", Identity: "ci/deploy-api", AuthMethods: []string{"approle"}, RoleId: proof.GetRoleId(),
		DefaultTtlSeconds: 600, MaxTtlSeconds: 3600, MaxLiveLeases: 9,
	}})); err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		issued   []*writv1.AuthorizeAndIssueResponse
		rejected int
	)
	var g errgroup.Group
	for i := range 3 {
		for range 6 {
			g.Go(func() error {
				resp, err := c.Authz(i, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && resp.Msg.GetCredential() != "":
					issued = append(issued, resp.Msg)
				case connect.CodeOf(err) == connect.CodeResourceExhausted:
					rejected++
				default:
					return fmt.Errorf("issue through %s: %v", c.Members[i].ID, err)
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(issued) != 7 || rejected != 11 {
		t.Fatalf("%d issued, %d rejected; want 7 and 11", len(issued), rejected)
	}
	if _, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, true)); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("an eighth lease: %v", err)
	}
	var ce *connect.Error
	if _, err := c.Authz(1, false).AuthorizeAndIssue(ctx, issueRequest(proof, true)); !errors.As(err, &ce) || len(ce.Details()) == 0 {
		t.Fatalf("exhausted without ErrorInfo: %v", err)
	}
	if _, err := c.Lease(2).Complete(ctx, connect.NewRequest(&writv1.CompleteRequest{Credential: issued[0].GetCredential()})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Authz(2, false).AuthorizeAndIssue(ctx, issueRequest(proof, true)); err != nil {
		t.Fatalf("after completing one, a slot is free: %v", err)
	}
	if _, err := c.Authz(1, false).AuthorizeAndIssue(ctx, issueRequest(proof, true)); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("and only one: %v", err)
	}
	c.WaitConverged()
}
