package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// bigPolicySet is testPolicy plus n-1 policies scoped to other principals
// (about 130 bytes each: 10,000 policies are about 1.3 MB of Cedar).
func bigPolicySet(n int, salt int) string {
	var b strings.Builder
	for i := range n - 1 {
		fmt.Fprintf(&b, "@id(\"gen-%d-%d\")\npermit (principal == Workload::\"svc/app-%d\", action == Action::\"read_secret\", resource) when { resource has owner && resource.owner == principal.owner };\n", salt, i, i)
	}
	b.WriteString(testPolicy)
	return b.String()
}

// BenchmarkPolicyActivation: an idle 3-node in-process cluster with fsync.
// Each op puts a new version of a 10,000-policy set through a follower
// (schema validation on that follower, forwarding, one Raft entry, Apply
// and the eager compile on every node) and ends when every node decides
// under the new version.
func BenchmarkPolicyActivation(b *testing.B) {
	c := nodetest.New(b, 3, nodetest.Options{})
	proof := setup(b, c)
	ctx := context.Background()
	via := (c.Leader() + 1) % 3
	iss, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil {
		b.Fatal(err)
	}
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-1"})
	authorize := connect.NewRequest(&writv1.AuthorizeRequest{
		Credential: iss.Msg.GetCredential(), Action: "deploy",
		Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"}, Context: ticket,
	})
	salt := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		salt++
		text := bigPolicySet(10000, salt)
		b.StartTimer()
		put, err := c.Admin(via).PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{
			PolicySet: &writv1.PolicySet{Name: "prod", Cedar: text},
		}))
		if err != nil {
			b.Fatal(err)
		}
		want := put.Msg.GetPolicySet().GetVersion()
		for i := range c.Members {
			nodetest.Eventually(b, time.Minute, "decides under the new version", func() error {
				r, err := c.Authz(i, false).Authorize(ctx, authorize)
				if err != nil {
					return err
				}
				if v := r.Msg.GetDecision().GetPolicyVersion(); v != want || !r.Msg.GetDecision().GetAllowed() {
					return fmt.Errorf("node %d: v%d, %v", i, v, r.Msg.GetDecision())
				}
				return nil
			})
		}
	}
	b.ReportMetric(float64(len(bigPolicySet(10000, 1))), "cedar-bytes")
}
