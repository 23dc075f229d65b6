package rpc_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// TestLeaseLifecycleOnAFakeClock: renewals are capped at the max expiry
// (issue + the role's max ttl) and counted; a child's ttl must fit in its
// parent's remaining time; a role without delegation depth refuses to
// delegate; every step is driven by the fake clock, nothing sleeps.
func TestLeaseLifecycleOnAFakeClock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.c.Admin(0)
	mustOK(t, ignore(admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{
		Name: "prod", Cedar: `permit (principal, action == Action::"deploy", resource);`,
	}}))))
	putRole := func(depth uint32) {
		mustOK(t, ignore(admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
			Name: "deploy-api", Environment: "prod", Identity: "ci/deploy-api", RoleId: f.proof.GetRoleId(),
			DefaultTtlSeconds: 60, MaxTtlSeconds: 300, MaxRenewals: 2, MaxDelegationDepth: depth,
		}}))))
	}
	putRole(0)
	authz := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)
	lease := writv1connect.NewLeaseServiceClient(http.DefaultClient, f.base)

	req := f.issueReq(false)
	req.Intent.TtlSeconds = 301
	if _, err := authz.AuthorizeAndIssue(ctx, connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("ttl over the role's max: %v", err)
	}
	req.Intent.TtlSeconds = 0
	issued, err := authz.AuthorizeAndIssue(ctx, connect.NewRequest(req))
	mustOK(t, err)
	issuedAt := issued.Msg.GetLease().GetIssuedAt().AsTime()
	if got := issued.Msg.GetLease().GetMaxExpiresAt().AsTime(); !got.Equal(issuedAt.Add(300 * time.Second)) {
		t.Fatalf("max expiry %v, issued %v", got, issuedAt)
	}
	delegateReq := func(cred string, ttl int64) *connect.Request[writv1.DelegateRequest] {
		return connect.NewRequest(&writv1.DelegateRequest{Credential: cred, Intent: &writv1.Intent{
			Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, TtlSeconds: ttl,
		}})
	}
	if _, err := lease.Delegate(ctx, delegateReq(issued.Msg.GetCredential(), 10)); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("delegating through a role with depth 0: %v", err)
	}

	f.clock.Advance(50 * time.Second)
	r1, err := authz.Renew(ctx, connect.NewRequest(&writv1.RenewRequest{Credential: issued.Msg.GetCredential(), TtlSeconds: 200}))
	mustOK(t, err)
	if got := r1.Msg.GetLease().GetExpiresAt().AsTime(); !got.Equal(issuedAt.Add(250 * time.Second)) {
		t.Fatalf("first renewal expires %v", got)
	}
	f.clock.Advance(190 * time.Second)
	r2, err := authz.Renew(ctx, connect.NewRequest(&writv1.RenewRequest{Credential: r1.Msg.GetCredential(), TtlSeconds: 200}))
	mustOK(t, err)
	if got := r2.Msg.GetLease().GetExpiresAt().AsTime(); !got.Equal(issuedAt.Add(300 * time.Second)) {
		t.Fatalf("second renewal is not capped at the max expiry: %v", got)
	}
	if _, err := authz.Renew(ctx, connect.NewRequest(&writv1.RenewRequest{Credential: r2.Msg.GetCredential()})); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("third renewal: %v", err)
	}

	putRole(1)
	// 60 s of the parent are left.
	if _, err := lease.Delegate(ctx, delegateReq(r2.Msg.GetCredential(), 61)); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("a child longer than its parent's remaining time: %v", err)
	}
	child, err := lease.Delegate(ctx, delegateReq(r2.Msg.GetCredential(), 0))
	mustOK(t, err)
	if got := child.Msg.GetLease().GetExpiresAt().AsTime(); !got.Equal(issuedAt.Add(300 * time.Second)) {
		t.Fatalf("child by default gets the parent's remaining time: %v", got)
	}
	if _, err := lease.Delegate(ctx, delegateReq(child.Msg.GetCredential(), 1)); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("beyond depth 1: %v", err)
	}
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-9"})
	a, err := authz.Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{Credential: child.Msg.GetCredential(), Action: "deploy",
		Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket}))
	mustOK(t, err)
	if !a.Msg.GetDecision().GetAllowed() {
		t.Fatalf("child authorize: %v", a.Msg.GetDecision())
	}

	// Dry runs and subtree revocations are admin calls.
	if _, err := authz.Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{Target: &writv1.RevokeRequest_Owner{Owner: "team-platform"}, DryRun: true})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("dry run without the admin token: %v", err)
	}
	adminAuthz := f.c.Authz(0, true)
	dry, err := adminAuthz.Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{Target: &writv1.RevokeRequest_Owner{Owner: "team-platform"}, DryRun: true}))
	mustOK(t, err)
	if !dry.Msg.GetDryRun() || dry.Msg.GetLiveLeases() != 2 || dry.Msg.GetIndex() != 0 {
		t.Fatalf("owner dry run: %v", dry.Msg)
	}
	// The clock passes the max expiry: everything is expired, nothing was reaped by hand.
	f.clock.Advance(61 * time.Second)
	for _, cred := range []string{r2.Msg.GetCredential(), child.Msg.GetCredential()} {
		v, err := authz.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: cred}))
		mustOK(t, err)
		if v.Msg.GetActive() {
			t.Fatalf("active past max expiry: %v", v.Msg)
		}
	}
}

// TestIssueRetryWithRequestID: a retry with the client's request id returns
// the same lease (and consumes no second secret-id use); another id issues
// another lease.
func TestIssueRetryWithRequestID(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	authz := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)
	req := f.issueReq(true)
	req.RequestId = "deploy-run-42"
	first, err := authz.AuthorizeAndIssue(ctx, connect.NewRequest(req))
	mustOK(t, err)
	again, err := authz.AuthorizeAndIssue(ctx, connect.NewRequest(req))
	mustOK(t, err)
	if again.Msg.GetLease().GetId() != first.Msg.GetLease().GetId() || again.Msg.GetIndex() != first.Msg.GetIndex() {
		t.Fatalf("retry issued %s at %d, first %s at %d", again.Msg.GetLease().GetId(), again.Msg.GetIndex(), first.Msg.GetLease().GetId(), first.Msg.GetIndex())
	}
	req.RequestId = "deploy-run-43"
	other, err := authz.AuthorizeAndIssue(ctx, connect.NewRequest(req))
	mustOK(t, err)
	if other.Msg.GetLease().GetId() == first.Msg.GetLease().GetId() {
		t.Fatal("another request id got the same lease")
	}
}

// TestDelegationContextReachesCedar: a policy that allows deploys only to
// delegated leases (context.delegation, filled by Writ) allows the child and
// denies the root, through Authorize and BatchAuthorize alike.
func TestDelegationContextReachesCedar(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.c.Admin(0)
	mustOK(t, ignore(admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{
		Name: "prod", Cedar: `@id("issue-with-ticket") permit (principal, action == Action::"deploy", resource) when { context has ticket };
@id("delegated-only") permit (principal, action == Action::"deploy", resource) when { context has delegation && context.delegation.depth == 1 && context.delegation.chain.contains(context.delegation.root) };`,
	}}))))
	mustOK(t, ignore(admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
		Name: "deploy-api", Environment: "prod", Identity: "ci/deploy-api", RoleId: f.proof.GetRoleId(),
		DefaultTtlSeconds: 60, MaxTtlSeconds: 300, MaxDelegationDepth: 1,
	}}))))
	authz := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)
	root, err := authz.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueReq(true)))
	mustOK(t, err)
	child, err := writv1connect.NewLeaseServiceClient(http.DefaultClient, f.base).Delegate(ctx, connect.NewRequest(&writv1.DelegateRequest{
		Credential: root.Msg.GetCredential(),
		Intent:     &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}},
	}))
	mustOK(t, err)
	if !child.Msg.GetDecision().GetAllowed() {
		t.Fatalf("delegate: %v", child.Msg.GetDecision())
	}
	for _, tc := range []struct {
		name, cred string
		allowed    bool
	}{{"root", root.Msg.GetCredential(), false}, {"child", child.Msg.GetCredential(), true}} {
		req := &writv1.AuthorizeRequest{Credential: tc.cred, Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}}
		a, err := authz.Authorize(ctx, connect.NewRequest(req))
		mustOK(t, err)
		b, err := authz.BatchAuthorize(ctx, connect.NewRequest(&writv1.BatchAuthorizeRequest{Credential: tc.cred, Items: []*writv1.BatchAuthorizeItem{
			{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}},
		}}))
		mustOK(t, err)
		if a.Msg.GetDecision().GetAllowed() != tc.allowed || b.Msg.GetResults()[0].GetDecision().GetAllowed() != tc.allowed {
			t.Fatalf("%s: authorize %v, batch %v, want %v", tc.name, a.Msg.GetDecision(), b.Msg.GetResults()[0], tc.allowed)
		}
	}
}
