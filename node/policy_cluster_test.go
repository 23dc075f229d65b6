package node_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// TestPolicySetsAcrossNodes: a policy set rejected by schema validation on
// a follower leaves the active version untouched on every node (nothing is
// proposed); a rollback activates the old text as a new version at one
// index on every node; decisions on every node report the version used.
func TestPolicySetsAcrossNodes(t *testing.T) {
	c := nodetest.New(t, 3, nodetest.Options{})
	c.WaitVoters(3)
	proof := setup(t, c) // prod v1 = testPolicy
	ctx := context.Background()
	c.WaitConverged()

	follower := (c.Leader() + 1) % 3
	for _, tc := range []struct{ name, cedar, wantPos, wantMsg string }{
		{"unknown attribute", testPolicy + "\n@id(\"bad\")\npermit (principal, action, resource) when { resource.colour == \"red\" };\n", "prod:", "colour"},
		{"unknown entity type", "permit (principal == Robot::\"r2\", action, resource);", "prod:1:1", "Robot"},
		{"syntax error", "permit (principal, action, resource) when { ;", "prod:1:", ""},
	} {
		_, err := c.Admin(follower).PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{
			PolicySet: &writv1.PolicySet{Name: "prod", Cedar: tc.cedar},
		}))
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
			t.Fatalf("%s: err = %v, want InvalidArgument", tc.name, err)
		}
		var found bool
		for _, d := range ce.Details() {
			m, derr := d.Value()
			if br, ok := m.(*errdetails.BadRequest); derr == nil && ok {
				for _, v := range br.GetFieldViolations() {
					if strings.HasPrefix(v.GetDescription(), tc.wantPos) && strings.Contains(v.GetDescription(), tc.wantMsg) {
						found = true
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: no BadRequest violation at %q mentioning %q in %v", tc.name, tc.wantPos, tc.wantMsg, err)
		}
	}
	// Nothing was proposed: every node still has v1 and only v1.
	c.WaitConverged()
	for i, m := range c.Members {
		v := m.Node.FSM().View()
		ps, ok := v.PolicySet("prod")
		if !ok || ps.GetVersion() != 1 || len(v.PolicySetVersions("prod")) != 1 {
			t.Fatalf("node %d: active %v, %d versions", i, ps, len(v.PolicySetVersions("prod")))
		}
	}

	// v2 forbids everything; a rollback to v1 is v3 on every node.
	v2 := "@id(\"freeze\")\nforbid (principal, action, resource);\n" + testPolicy
	if _, err := c.Admin(follower).PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{
		PolicySet: &writv1.PolicySet{Name: "prod", Cedar: v2}, ExpectVersion: 1,
	})); err != nil {
		t.Fatal(err)
	}
	iss, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil {
		t.Fatal(err)
	}
	if d := iss.Msg.GetDecision(); d.GetAllowed() || d.GetPolicyVersion() != 2 || d.GetOutcome() != writv1.DecisionOutcome_DECISION_OUTCOME_FORBIDDEN {
		t.Fatalf("under v2: %v", d)
	}
	rb, err := c.Policy(follower).RollbackPolicySet(ctx, connect.NewRequest(&writv1.RollbackPolicySetRequest{Name: "prod", Version: 1, ExpectVersion: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if ps := rb.Msg.GetPolicySet(); ps.GetVersion() != 3 || ps.GetRolledBackFrom() != 1 || ps.GetCedar() != testPolicy {
		t.Fatalf("rollback = %v", ps)
	}
	// A stale expectation is refused and changes nothing.
	if _, err := c.Policy(0).RollbackPolicySet(ctx, connect.NewRequest(&writv1.RollbackPolicySetRequest{Name: "prod", Version: 2, ExpectVersion: 2})); connect.CodeOf(err) != connect.CodeAborted {
		t.Fatalf("stale rollback: %v", err)
	}
	iss, err = c.Authz(1, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil {
		t.Fatal(err)
	}
	if d := iss.Msg.GetDecision(); !d.GetAllowed() || d.GetPolicyVersion() != 3 {
		t.Fatalf("after rollback: %v", d)
	}
	cred := iss.Msg.GetCredential()
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-1"})
	for i := range c.Members {
		nodetest.Eventually(t, 20*time.Second, fmt.Sprintf("node %d decides under v3", i), func() error {
			r, err := c.Authz(i, false).Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
				Credential: cred, Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"},
				Context: ticket,
			}))
			if err != nil {
				return err
			}
			if d := r.Msg.GetDecision(); d.GetPolicyVersion() != 3 || !d.GetAllowed() {
				return fmt.Errorf("decision under v%d: %v", d.GetPolicyVersion(), d)
			}
			return nil
		})
		h, err := c.Policy(i).ListPolicySetVersions(ctx, connect.NewRequest(&writv1.ListPolicySetVersionsRequest{
			Name: "prod", Read: &writv1.ReadOptions{MinIndex: rb.Msg.GetIndex()},
		}))
		if err != nil {
			t.Fatal(err)
		}
		if h.Msg.GetActiveVersion() != 3 || len(h.Msg.GetVersions()) != 3 || h.Msg.GetVersions()[0].GetActivatedIndex() != rb.Msg.GetIndex() {
			t.Fatalf("node %d history: %v", i, h.Msg)
		}
	}
	c.WaitConverged()
}
