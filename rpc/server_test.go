package rpc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/internal/clock"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

const policy = `
@id("deploy-with-ticket")
@reason("deploys need a change ticket")
permit (principal, action == Action::"deploy", resource)
when { context has ticket };
`

type fixture struct {
	c     *nodetest.Cluster
	clock *clock.Fake
	base  string
	proof *writv1.AppRoleProof
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fc := clock.NewFake(time.Now())
	c := nodetest.New(t, 1, nodetest.Options{Clock: fc})
	f := &fixture{c: c, clock: fc, base: "http://" + c.Members[0].APIAddr}
	ctx := context.Background()
	admin := c.Admin(0)
	mustOK(t, ignore(admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: policy}}))))
	mustOK(t, ignore(admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
		Id: "ci/deploy-api", Kind: "ci_job", Owner: "team-platform", Environment: "prod",
	}}))))
	role, err := admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
		Name: "deploy-api", Environment: "prod", Identity: "ci/deploy-api", DefaultTtlSeconds: 60, MaxTtlSeconds: 600,
	}}))
	mustOK(t, err)
	sid, err := admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: "deploy-api"}))
	mustOK(t, err)
	f.proof = &writv1.AppRoleProof{RoleId: role.Msg.GetRole().GetRoleId(), SecretId: sid.Msg.GetSecretId()}
	return f
}

func ignore[T any](_ T, err error) error { return err }

func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) issueReq(ticket bool) *writv1.AuthorizeAndIssueRequest {
	fields := map[string]any{}
	if ticket {
		fields["ticket"] = "CHG-1"
	}
	st, _ := structpb.NewStruct(fields)
	return &writv1.AuthorizeAndIssueRequest{
		Proof:  &writv1.Proof{Method: &writv1.Proof_Approle{Approle: f.proof}},
		Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: st},
	}
}

// TestProtocols drives issue → verify → authorize through every protocol
// connect-go serves, JSON and binary.
func TestProtocols(t *testing.T) {
	f := newFixture(t)
	h2c := &http.Client{Transport: &http.Transport{Protocols: func() *http.Protocols {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		return &p
	}()}}
	cases := []struct {
		name string
		hc   *http.Client
		opts []connect.ClientOption
	}{
		{"connect-proto-http1", http.DefaultClient, nil},
		{"connect-json-http1", http.DefaultClient, []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect-proto-h2c", h2c, nil},
		{"grpc-h2c", h2c, []connect.ClientOption{connect.WithGRPC()}},
		{"grpcweb-http1", http.DefaultClient, []connect.ClientOption{connect.WithGRPCWeb()}},
		{"grpcweb-json-http1", http.DefaultClient, []connect.ClientOption{connect.WithGRPCWeb(), connect.WithProtoJSON()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			client := writv1connect.NewAuthzServiceClient(tc.hc, f.base, tc.opts...)
			issued, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueReq(true)))
			mustOK(t, err)
			if !issued.Msg.GetDecision().GetAllowed() {
				t.Fatalf("denied: %v", issued.Msg.GetDecision())
			}
			if got := issued.Msg.GetDecision().GetDeterminingPolicies(); len(got) != 1 || got[0].GetId() != "deploy-with-ticket" {
				t.Fatalf("determining policies %v", got)
			}
			v, err := client.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: issued.Msg.GetCredential()}))
			mustOK(t, err)
			if !v.Msg.GetActive() || v.Msg.GetLease().GetIdentity() != "ci/deploy-api" {
				t.Fatalf("verify: %v", v.Msg)
			}
			ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-2"})
			a, err := client.Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
				Credential: issued.Msg.GetCredential(), Action: "deploy",
				Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket,
			}))
			mustOK(t, err)
			if !a.Msg.GetDecision().GetAllowed() || a.Msg.GetAppliedIndex() == 0 {
				t.Fatalf("authorize: %v", a.Msg)
			}
			// Outside the credential's scope: a deny, not an error.
			a, err = client.Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
				Credential: issued.Msg.GetCredential(), Action: "deploy",
				Resource: &writv1.Resource{Type: "Deployment", Id: "billing"}, Context: ticket,
			}))
			mustOK(t, err)
			if a.Msg.GetDecision().GetAllowed() {
				t.Fatalf("authorize outside scope allowed")
			}
		})
	}
}

// TestStockGRPCClient: a grpc-go client (not connect) reaches the API, the
// health service and reflection.
func TestStockGRPCClient(t *testing.T) {
	f := newFixture(t)
	conn, err := grpc.NewClient(f.c.Members[0].APIAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	mustOK(t, err)
	defer conn.Close()
	ctx := context.Background()
	hr, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	mustOK(t, err)
	if hr.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health %v", hr.GetStatus())
	}
	issued := &writv1.AuthorizeAndIssueResponse{}
	mustOK(t, conn.Invoke(ctx, "/writ.v1.AuthzService/AuthorizeAndIssue", f.issueReq(true), issued))
	v := &writv1.VerifyResponse{}
	mustOK(t, conn.Invoke(ctx, "/writ.v1.AuthzService/Verify", &writv1.VerifyRequest{Credential: issued.GetCredential()}, v))
	if !v.GetActive() {
		t.Fatalf("verify over grpc: %v", v)
	}
	err = conn.Invoke(ctx, "/writ.v1.AuthzService/Authorize", &writv1.AuthorizeRequest{Credential: "not-a-jwt", Action: "deploy",
		Resource: &writv1.Resource{Type: "Deployment", Id: "api"}}, &writv1.AuthorizeResponse{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("grpc authorize with garbage credential: %v", err)
	}
}

// TestCurlJSON: plain HTTP POST with a JSON body, as curl sends it.
func TestCurlJSON(t *testing.T) {
	f := newFixture(t)
	body, _ := json.Marshal(map[string]any{
		"proof":  map[string]any{"approle": map[string]any{"roleId": f.proof.GetRoleId(), "secretId": f.proof.GetSecretId()}},
		"intent": map[string]any{"action": "deploy", "resource": map[string]any{"type": "Deployment", "id": "api"}, "context": map[string]any{"ticket": "CHG-9"}},
	})
	resp, err := http.Post(f.base+"/writ.v1.AuthzService/AuthorizeAndIssue", "application/json", bytes.NewReader(body))
	mustOK(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	var out struct {
		Decision   struct{ Allowed bool }
		Credential string
	}
	mustOK(t, json.Unmarshal(raw, &out))
	if !out.Decision.Allowed || out.Credential == "" {
		t.Fatalf("curl issue: %s", raw)
	}
	jwks, err := http.Get(f.base + "/.well-known/jwks.json")
	mustOK(t, err)
	defer jwks.Body.Close()
	raw, _ = io.ReadAll(jwks.Body)
	if jwks.StatusCode != http.StatusOK || !strings.Contains(string(raw), `"Ed25519"`) {
		t.Fatalf("jwks %d: %s", jwks.StatusCode, raw)
	}
}

func reasonOf(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return ""
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				return info.GetReason()
			}
		}
	}
	return ""
}

// TestBadInput: every kind of bad input gets a clear code and changes no
// replicated state.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	client := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)
	issued, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueReq(true)))
	mustOK(t, err)
	cred := issued.Msg.GetCredential()
	// A credential signed by a key the cluster never had.
	forged := forge(t, cred)

	fsm := f.c.Members[0].Node.FSM()
	before := fsm.StateHash()
	wrongSecret := f.issueReq(true)
	wrongSecret.Proof = &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: f.proof.GetRoleId(), SecretId: "wrong"}}}
	unknownRole := f.issueReq(true)
	unknownRole.Proof = &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: "nope", SecretId: f.proof.GetSecretId()}}}
	noResource := f.issueReq(true)
	noResource.Intent.Resource = nil
	reserved := f.issueReq(true)
	reserved.Intent.Context, _ = structpb.NewStruct(map[string]any{"auth": "me"})
	fractional := f.issueReq(true)
	fractional.Intent.Context, _ = structpb.NewStruct(map[string]any{"ticket": "x", "n": 1.5})
	huge := f.issueReq(true)
	huge.Intent.Context, _ = structpb.NewStruct(map[string]any{"ticket": strings.Repeat("x", 2<<20)})
	authzReq := func(c string) *writv1.AuthorizeRequest {
		return &writv1.AuthorizeRequest{Credential: c, Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}}
	}
	cases := []struct {
		name   string
		call   func() error
		code   connect.Code
		reason string
	}{
		{"wrong secret id", func() error { return ignore(client.AuthorizeAndIssue(ctx, connect.NewRequest(wrongSecret))) }, connect.CodeUnauthenticated, "invalid_secret_id"},
		{"unknown role id", func() error { return ignore(client.AuthorizeAndIssue(ctx, connect.NewRequest(unknownRole))) }, connect.CodeUnauthenticated, ""},
		{"missing proof", func() error {
			return ignore(client.AuthorizeAndIssue(ctx, connect.NewRequest(&writv1.AuthorizeAndIssueRequest{Intent: f.issueReq(true).Intent})))
		}, connect.CodeInvalidArgument, "invalid_argument"},
		{"missing resource", func() error { return ignore(client.AuthorizeAndIssue(ctx, connect.NewRequest(noResource))) }, connect.CodeInvalidArgument, "invalid_argument"},
		{"reserved context key", func() error { return ignore(client.AuthorizeAndIssue(ctx, connect.NewRequest(reserved))) }, connect.CodeInvalidArgument, "invalid_argument"},
		{"fractional number in context", func() error { return ignore(client.AuthorizeAndIssue(ctx, connect.NewRequest(fractional))) }, connect.CodeInvalidArgument, "invalid_argument"},
		{"oversized request", func() error { return ignore(client.AuthorizeAndIssue(ctx, connect.NewRequest(huge))) }, connect.CodeResourceExhausted, ""},
		{"garbage credential", func() error { return ignore(client.Authorize(ctx, connect.NewRequest(authzReq("garbage")))) }, connect.CodeUnauthenticated, "malformed_credential"},
		{"forged credential", func() error { return ignore(client.Authorize(ctx, connect.NewRequest(authzReq(forged)))) }, connect.CodeUnauthenticated, ""},
		{"empty credential", func() error { return ignore(client.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{}))) }, connect.CodeInvalidArgument, "invalid_argument"},
		{"admin call without token", func() error {
			return ignore(writv1connect.NewAdminServiceClient(http.DefaultClient, f.base).ListIdentities(ctx, connect.NewRequest(&writv1.ListIdentitiesRequest{})))
		}, connect.CodeUnauthenticated, "missing_admin_token"},
		{"revoke without admin token", func() error {
			return ignore(client.Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{Target: &writv1.RevokeRequest_Identity{Identity: "ci/deploy-api"}})))
		}, connect.CodeUnauthenticated, "missing_admin_token"},
		{"unknown identity in role", func() error {
			return ignore(f.c.Admin(0).PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{Name: "x", Environment: "prod", Identity: "ghost"}})))
		}, connect.CodeFailedPrecondition, ""},
		{"invalid cedar", func() error {
			return ignore(f.c.Admin(0).PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: "permit (principal"}})))
		}, connect.CodeInvalidArgument, "invalid_policy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if got := connect.CodeOf(err); got != tc.code {
				t.Fatalf("code %v, want %v (err %v)", got, tc.code, err)
			}
			if tc.reason != "" && reasonOf(err) != tc.reason {
				t.Fatalf("reason %q, want %q (err %v)", reasonOf(err), tc.reason, err)
			}
		})
	}
	t.Run("malformed JSON", func(t *testing.T) {
		resp, err := http.Post(f.base+"/writ.v1.AuthzService/AuthorizeAndIssue", "application/json", strings.NewReader(`{"proof": `))
		mustOK(t, err)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), "invalid_argument") {
			t.Fatalf("malformed JSON: %d %s", resp.StatusCode, raw)
		}
	})
	if after := fsm.StateHash(); after != before {
		t.Fatalf("bad input changed replicated state")
	}
	t.Run("expired credential", func(t *testing.T) {
		f.clock.Advance(2 * time.Minute) // past the 60s default TTL
		v, err := client.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: cred}))
		mustOK(t, err)
		if v.Msg.GetActive() || v.Msg.GetReason() != "expired" {
			t.Fatalf("expired credential: %v", v.Msg)
		}
		_, err = client.Authorize(ctx, connect.NewRequest(authzReq(cred)))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("authorize expired: %v", err)
		}
	})
}

// TestRenewAndComplete: a renewal re-decides the lease's scope with the
// resource attributes stated at issuance, is bounded by max renewals, and a
// holder can end its own lease.
func TestRenewAndComplete(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.c.Admin(0)
	mustOK(t, ignore(admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{
		Name: "prod", Cedar: `@id("prod-only") permit (principal, action == Action::"deploy", resource) when { resource has env && resource.env == "prod" };`,
	}}))))
	mustOK(t, ignore(admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
		Name: "deploy-api", Environment: "prod", Identity: "ci/deploy-api", DefaultTtlSeconds: 60, MaxTtlSeconds: 600, MaxRenewals: 1,
	}}))))
	client := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)
	req := f.issueReq(false)
	req.Intent.Resource.Attributes, _ = structpb.NewStruct(map[string]any{"env": "prod"})
	issued, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(req))
	mustOK(t, err)
	if !issued.Msg.GetDecision().GetAllowed() {
		t.Fatalf("issue denied: %v", issued.Msg.GetDecision())
	}
	f.clock.Advance(30 * time.Second)
	renewed, err := client.Renew(ctx, connect.NewRequest(&writv1.RenewRequest{Credential: issued.Msg.GetCredential(), TtlSeconds: 120}))
	mustOK(t, err)
	if !renewed.Msg.GetDecision().GetAllowed() || renewed.Msg.GetLease().GetRenewals() != 1 ||
		!renewed.Msg.GetLease().GetExpiresAt().AsTime().After(issued.Msg.GetLease().GetExpiresAt().AsTime()) {
		t.Fatalf("renew: %v", renewed.Msg)
	}
	_, err = client.Renew(ctx, connect.NewRequest(&writv1.RenewRequest{Credential: renewed.Msg.GetCredential()}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("second renewal: want ResourceExhausted, got %v", err)
	}
	// The holder completes its task: the lease is unusable at once.
	mustOK(t, ignore(client.Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{Target: &writv1.RevokeRequest_Credential{Credential: renewed.Msg.GetCredential()}}))))
	v, err := client.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: renewed.Msg.GetCredential()}))
	mustOK(t, err)
	if v.Msg.GetActive() || v.Msg.GetReason() != "completed" || v.Msg.GetLease().GetStatus() != "completed" {
		t.Fatalf("after completion: %v", v.Msg)
	}
}
