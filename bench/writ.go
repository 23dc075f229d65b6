package bench

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// The names the benchmark's fixtures use on the target cluster.
const (
	benchEnv      = "bench"
	benchIdentity = "bench/agent"
	benchRole     = "bench-agent"
	benchAction   = "deploy"
)

// Environments is the --environments value a cluster needs for writ bench:
// the defaults plus the benchmark's own environment, whose policy set
// ("bench") the benchmark replaces freely. --local clusters start with it;
// a cluster given with --addr must list "bench" too.
const Environments = "prod,staging,dev," + benchEnv

// Target is a running Writ cluster the benchmark drives. Its clients are
// safe for concurrent use.
type Target struct {
	URLs       []string
	AdminToken string
	Protocol   Protocol

	authz []writv1connect.AuthzServiceClient // one per node
	admin writv1connect.AdminServiceClient   // node 0
	hc    *http.Client
}

// NewTarget builds clients for every node, sized for conns concurrent callers.
func NewTarget(urls []string, adminToken string, p Protocol, conns int) (*Target, error) {
	if len(urls) == 0 {
		return nil, fmt.Errorf("%w: no node addresses", ErrConfig)
	}
	t := &Target{URLs: urls, AdminToken: adminToken, Protocol: p}
	hc := p.httpClient(conns)
	t.hc = hc
	opts := append(p.clientOptions(), connect.WithInterceptors(bearer(adminToken)))
	for _, u := range urls {
		t.authz = append(t.authz, writv1connect.NewAuthzServiceClient(hc, u, opts...))
	}
	t.admin = writv1connect.NewAdminServiceClient(hc, urls[0], opts...)
	return t, nil
}

// bearer sends the admin token: Revoke by lease id needs it, the workload
// calls ignore it.
func bearer(token string) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token)
			}
			return next(ctx, req)
		}
	})
}

// GeneratePolicies returns n Cedar policies of a realistic shape: one permits
// the benchmark's request, the rest are each scoped to another resource (the
// shape authz's indexed evaluation is built for). The fillers are written
// tersely, without annotations, and use only the schema's types (every
// policy set is validated against policies/writ.cedarschema on write).
func GeneratePolicies(n int) string {
	var b strings.Builder
	b.WriteString(`@id("deploy-with-ticket") permit (principal, action == Action::"deploy", resource) when { context has ticket };` + "\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "permit(principal,action==Action::\"deploy\",resource==Deployment::\"s%d\");\n", i)
	}
	return b.String()
}

// fixture is what the scenarios issue with.
type fixture struct {
	t                *Target
	roleID, secretID string
	ctx              *structpb.Struct
	resource         *writv1.Resource
	next             atomic.Uint64 // round robin over nodes
}

// setupFixture installs the benchmark's policy set, identity and role on the
// target (idempotently) and creates a secret id.
func (t *Target) setupFixture(ctx context.Context, policies int) (*fixture, error) {
	if err := t.putPolicies(ctx, policies); err != nil {
		return nil, err
	}
	if _, err := t.admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
		Id: benchIdentity, Kind: "agent", Owner: "bench", Environment: benchEnv, Description: "writ bench",
	}})); err != nil {
		return nil, fmt.Errorf("%w: put identity: %v", ErrSetup, err)
	}
	role, err := t.admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
		Name: benchRole, Environment: benchEnv, Identity: benchIdentity, AuthMethods: []string{"approle"},
		DefaultTtlSeconds: 3600, MaxTtlSeconds: 7 * 24 * 3600, MaxRenewals: 4_000_000_000,
	}}))
	if err != nil {
		return nil, fmt.Errorf("%w: put role: %v", ErrSetup, err)
	}
	sid, err := t.admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: benchRole}))
	if err != nil {
		return nil, fmt.Errorf("%w: create secret id: %v", ErrSetup, err)
	}
	st, _ := structpb.NewStruct(map[string]any{"ticket": "BENCH-1"})
	return &fixture{
		t: t, roleID: role.Msg.GetRole().GetRoleId(), secretID: sid.Msg.GetSecretId(), ctx: st,
		resource: &writv1.Resource{Type: "Deployment", Id: "svc-bench"},
	}, nil
}

// putPolicies replaces the bench policy set with n generated policies.
func (t *Target) putPolicies(ctx context.Context, n int) error {
	if _, err := t.admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{
		Name: benchEnv, Cedar: GeneratePolicies(n), Description: fmt.Sprintf("writ bench: %d generated policies", n),
	}})); err != nil {
		return fmt.Errorf("%w: put %d policies: %v", ErrSetup, n, err)
	}
	return nil
}

// node picks the next node round robin.
func (f *fixture) node() writv1connect.AuthzServiceClient {
	return f.t.authz[int(f.next.Add(1)%uint64(len(f.t.authz)))]
}

func (f *fixture) issueRequest() *writv1.AuthorizeAndIssueRequest {
	return &writv1.AuthorizeAndIssueRequest{
		Proof:  &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: f.roleID, SecretId: f.secretID}}},
		Intent: &writv1.Intent{Action: benchAction, Resource: f.resource, Context: f.ctx},
	}
}

// issue gets one credential through the given node.
func (f *fixture) issue(ctx context.Context, c writv1connect.AuthzServiceClient) (*writv1.AuthorizeAndIssueResponse, error) {
	resp, err := c.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueRequest()))
	if err != nil {
		return nil, err
	}
	if !resp.Msg.GetDecision().GetAllowed() {
		return nil, fmt.Errorf("issue denied: %s", resp.Msg.GetDecision().GetReason())
	}
	return resp.Msg, nil
}

// credentials issues n credentials, spread over the nodes; every node has
// applied all of them when this returns (each read waits for the last index).
func (f *fixture) credentials(ctx context.Context, n int) ([]string, uint64, error) {
	out := make([]string, n)
	var last uint64
	for i := range out {
		r, err := f.issue(ctx, f.node())
		if err != nil {
			return nil, 0, fmt.Errorf("%w: issue credential: %v", ErrSetup, err)
		}
		out[i] = r.GetCredential()
		last = max(last, r.GetIndex())
	}
	if err := f.waitApplied(ctx, out[len(out)-1], last); err != nil {
		return nil, 0, err
	}
	return out, last, nil
}

// waitApplied returns once every node has applied index (a read with
// min_index on each).
func (f *fixture) waitApplied(ctx context.Context, cred string, index uint64) error {
	for i, c := range f.t.authz {
		if _, err := c.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: cred, Read: &writv1.ReadOptions{MinIndex: index}})); err != nil {
			return fmt.Errorf("%w: node %d applying index %d: %v", ErrSetup, i+1, index, err)
		}
	}
	return nil
}

func (f *fixture) authorizeRequest(cred string, minIndex uint64) *writv1.AuthorizeRequest {
	req := &writv1.AuthorizeRequest{Credential: cred, Action: benchAction, Resource: f.resource, Context: f.ctx}
	if minIndex > 0 {
		req.Read = &writv1.ReadOptions{MinIndex: minIndex}
	}
	return req
}

// authorizeOK checks one Authorize answer.
func authorizeOK(resp *connect.Response[writv1.AuthorizeResponse], err error) error {
	if err != nil {
		return err
	}
	if !resp.Msg.GetDecision().GetAllowed() {
		return fmt.Errorf("authorize denied: %s", resp.Msg.GetDecision().GetReason())
	}
	return nil
}

// rejects reports whether node c refuses cred now (no min_index: what a
// gateway asking that node would be told).
func rejects(ctx context.Context, c writv1connect.AuthzServiceClient, cred string) (bool, error) {
	resp, err := c.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: cred}))
	if err != nil {
		return false, err
	}
	return !resp.Msg.GetActive(), nil
}
