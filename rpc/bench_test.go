package rpc_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// generatedPolicies returns n policies of a realistic shape: one permits the
// benchmark's request, the rest are scoped to other actions and resources.
func generatedPolicies(n int) string {
	var b strings.Builder
	b.WriteString(`@id("deploy") permit (principal, action == Action::"deploy", resource) when { context has ticket };` + "\n")
	// Fillers cycle through the schema's (action, resource type) pairs: every
	// policy set is validated against policies/writ.cedarschema on write.
	scopes := [][2]string{{"read_secret", "Secret"}, {"issue_db_credential", "Database"}, {"deploy", "Deployment"},
		{"backup", "Database"}, {"read_object", "Bucket"}, {"call_tool", "Tool"}, {"push", "Repository"}}
	for i := 1; i < n; i++ {
		sc := scopes[i%len(scopes)]
		fmt.Fprintf(&b, "@id(\"p%d\") permit (principal, action == Action::\"%s\", resource == %s::\"svc-%d\") when { context has ticket };\n", i, sc[0], sc[1], i)
	}
	return b.String()
}

// BenchmarkAuthorize measures one Authorize call end to end on an in-process
// node over loopback HTTP/1.1 (Connect protocol, binary): credential check
// (cached), lease check, scope check and Cedar on the whole policy set.
func BenchmarkAuthorize(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			client, cred := benchNode(b, n)
			ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-1"})
			req := &writv1.AuthorizeRequest{Credential: cred, Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Authorize(ctx, connect.NewRequest(req))
				if err != nil || !resp.Msg.GetDecision().GetAllowed() {
					b.Fatalf("authorize: %v %v", err, resp)
				}
			}
		})
	}
}

// benchNode starts one in-process node with n generated policies and returns
// an Authorize client and a live credential for Deployment::api.
func benchNode(b *testing.B, n int) (writv1connect.AuthzServiceClient, string) {
	b.Helper()
	return benchNodeOn(b, nodetest.New(b, 1, nodetest.Options{}), n)
}

// benchNodeOn loads n generated policies, an identity and a role into c and
// returns an Authorize client of member 0 over loopback and a live
// credential for Deployment::api.
func benchNodeOn(b *testing.B, c *nodetest.Cluster, n int) (writv1connect.AuthzServiceClient, string) {
	b.Helper()
	ctx := context.Background()
	admin := c.Admin(0)
	if _, err := admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: generatedPolicies(n)}})); err != nil {
		b.Fatal(err)
	}
	if _, err := admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{Id: "ci/a", Kind: "ci_job", Owner: "t", Environment: "prod"}})); err != nil {
		b.Fatal(err)
	}
	role, err := admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{Name: "a", Environment: "prod", Identity: "ci/a", DefaultTtlSeconds: 3600, MaxTtlSeconds: 3600}}))
	if err != nil {
		b.Fatal(err)
	}
	sid, err := admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: "a"}))
	if err != nil {
		b.Fatal(err)
	}
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-1"})
	client := writv1connect.NewAuthzServiceClient(http.DefaultClient, "http://"+c.Members[0].APIAddr)
	issued, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(&writv1.AuthorizeAndIssueRequest{
		Proof:  &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: role.Msg.GetRole().GetRoleId(), SecretId: sid.Msg.GetSecretId()}}},
		Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket},
	}))
	if err != nil {
		b.Fatal(err)
	}
	return client, issued.Msg.GetCredential()
}

// BenchmarkBatchAuthorize measures one BatchAuthorize call of 100 decisions
// sharing one credential (verified once per call), 100 policies.
func BenchmarkBatchAuthorize(b *testing.B) {
	client, cred := benchNode(b, 100)
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-1"})
	req := &writv1.BatchAuthorizeRequest{Credential: cred}
	for range 100 {
		req.Items = append(req.Items, &writv1.BatchAuthorizeItem{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket})
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.BatchAuthorize(ctx, connect.NewRequest(req))
		if err != nil || !resp.Msg.GetResults()[99].GetDecision().GetAllowed() {
			b.Fatalf("batch authorize: %v %v", err, resp)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "decisions/s")
}
