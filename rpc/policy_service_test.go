package rpc_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/node/nodetest"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

func violations(err error) []string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return nil
	}
	var out []string
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if br, ok := v.(*errdetails.BadRequest); ok {
				for _, fv := range br.GetFieldViolations() {
					out = append(out, fv.GetDescription())
				}
			}
		}
	}
	return out
}

// TestPutPolicySetValidates: a set the schema rejects is InvalidArgument
// with reason invalid_policy and one BadRequest violation per problem,
// each with its position; the replicated state does not change.
func TestPutPolicySetValidates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.c.Admin(0)
	fsm := f.c.Members[0].Node.FSM()
	before := fsm.StateHash()
	bad := policy + `
@id("typo")
permit (principal is CiJob, action == Action::"deploy", resource is Deployment)
when { resource.ownr == principal.owner };

@id("wrong-type")
permit (principal, action == Action::"deploy", resource)
when { context.requested_ttl == "long" };
`
	_, err := admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: bad}}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || reasonOf(err) != "invalid_policy" {
		t.Fatalf("err = %v (reason %q)", err, reasonOf(err))
	}
	v := violations(err)
	if len(v) < 2 || !strings.HasPrefix(v[0], "prod:7:1: policy typo: ") || !strings.Contains(v[0], "ownr") ||
		!strings.HasPrefix(v[len(v)-1], "prod:11:1: policy wrong-type: ") {
		t.Fatalf("violations = %q", v)
	}
	if fsm.StateHash() != before {
		t.Fatal("a rejected policy set changed the state")
	}

	// ValidatePolicySet answers the same without an error.
	pc := writv1connect.NewPolicyServiceClient(http.DefaultClient, f.base, adminToken())
	vr, err := pc.ValidatePolicySet(ctx, connect.NewRequest(&writv1.ValidatePolicySetRequest{Name: "prod", Cedar: bad}))
	mustOK(t, err)
	if vr.Msg.GetValid() || len(vr.Msg.GetProblems()) != len(v) || vr.Msg.GetProblems()[0].GetPolicyId() != "typo" {
		t.Fatalf("validate = %v", vr.Msg)
	}
	vr, err = pc.ValidatePolicySet(ctx, connect.NewRequest(&writv1.ValidatePolicySetRequest{Name: "prod", Cedar: policy}))
	mustOK(t, err)
	if !vr.Msg.GetValid() || vr.Msg.GetPolicies() != 1 {
		t.Fatalf("validate good = %v", vr.Msg)
	}
	// Without the admin token: refused.
	anon := writv1connect.NewPolicyServiceClient(http.DefaultClient, f.base)
	if _, err := anon.ValidatePolicySet(ctx, connect.NewRequest(&writv1.ValidatePolicySetRequest{Cedar: policy})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous: %v", err)
	}
}

// TestDecisionExplains: allow, deny by forbid and no-permit carry the
// outcome, the @reason and the per-policy errors.
func TestDecisionExplains(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.c.Admin(0)
	set := policy + `
@id("no-weekend")
@reason("no deploys tagged weekend")
forbid (principal, action == Action::"deploy", resource)
when { context has purpose && context.purpose == "weekend" };

@id("broken")
@reason("validates, but overflows at run time: strict validation cannot rule that out")
permit (principal, action == Action::"deploy", resource)
when { context has requested_ttl && context.requested_ttl * 9223372036854775807 > 0 };
`
	mustOK(t, ignore(admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: set}}))))
	client := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)

	r, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueReq(true)))
	mustOK(t, err)
	d := r.Msg.GetDecision()
	if !d.GetAllowed() || d.GetOutcome() != writv1.DecisionOutcome_DECISION_OUTCOME_ALLOWED || d.GetPolicyVersion() != 2 ||
		d.GetDeterminingPolicies()[0].GetReason() != "deploys need a change ticket" ||
		len(d.GetPolicyErrors()) != 1 || d.GetPolicyErrors()[0].GetPolicyId() != "broken" {
		t.Fatalf("allow: %v", d)
	}
	r, err = client.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueReq(false)))
	mustOK(t, err)
	if d := r.Msg.GetDecision(); d.GetAllowed() || d.GetOutcome() != writv1.DecisionOutcome_DECISION_OUTCOME_NO_PERMIT || len(d.GetDeterminingPolicies()) != 0 {
		t.Fatalf("no permit: %v", d)
	}
	req := f.issueReq(true)
	req.Intent.Context.Fields["purpose"] = structString("weekend")
	r, err = client.AuthorizeAndIssue(ctx, connect.NewRequest(req))
	mustOK(t, err)
	if d := r.Msg.GetDecision(); d.GetAllowed() || d.GetOutcome() != writv1.DecisionOutcome_DECISION_OUTCOME_FORBIDDEN ||
		d.GetDeterminingPolicies()[0].GetId() != "no-weekend" || d.GetDeterminingPolicies()[0].GetReason() != "no deploys tagged weekend" {
		t.Fatalf("forbidden: %v", d)
	}
}

// TestShadowAndDiff: a shadow candidate that forbids deploys disagrees on
// every allowed deploy and never changes the answer; DiffPolicySet replays
// the sampled recent requests against a candidate.
func TestShadowAndDiff(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.c.Admin(0)
	pc := writv1connect.NewPolicyServiceClient(http.DefaultClient, f.base, adminToken())
	client := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)
	strict := "@id(\"freeze\")\nforbid (principal, action, resource);\n" + policy
	mustOK(t, ignore(admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "shadow/prod", Cedar: strict}}))))

	const n = 8
	for i := range n {
		r, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueReq(i%2 == 0)))
		mustOK(t, err)
		if d := r.Msg.GetDecision(); d.GetAllowed() != (i%2 == 0) || d.GetPolicySet() != "prod" {
			t.Fatalf("request %d answered by the shadow? %v", i, d)
		}
	}
	st, err := pc.GetShadowStatus(ctx, connect.NewRequest(&writv1.GetShadowStatusRequest{}))
	mustOK(t, err)
	if len(st.Msg.GetSets()) != 1 {
		t.Fatalf("shadow status = %v", st.Msg)
	}
	s := st.Msg.GetSets()[0]
	// Allowed deploys are narrowed by the freeze; denied ones (no permit)
	// become forbid denials: same decision, other reasons.
	if s.GetPolicySet() != "prod" || s.GetEvaluations() != n || s.GetNarrowed() != n/2 || s.GetReasons() != n/2 || s.GetWidened() != 0 || s.GetCandidateVersion() != 1 {
		t.Fatalf("shadow counts = %v", s)
	}

	// The node sampled one request in 4: two of the eight. A candidate
	// permitting every deploy widens the sampled denials, if any.
	open := "permit (principal, action, resource);"
	diff, err := pc.DiffPolicySet(ctx, connect.NewRequest(&writv1.DiffPolicySetRequest{Name: "prod", Cedar: open}))
	mustOK(t, err)
	m := diff.Msg
	if m.GetReplayed() != n/4 || m.GetWidened()+m.GetReasons() != m.GetReplayed() || m.GetNarrowed() != 0 {
		t.Fatalf("diff = %v", m)
	}
	// An invalid candidate is refused like a Put.
	if _, err := pc.DiffPolicySet(ctx, connect.NewRequest(&writv1.DiffPolicySetRequest{Name: "prod", Cedar: "permit (principal == Robot::\"x\", action, resource);"})); reasonOf(err) != "invalid_policy" {
		t.Fatalf("invalid candidate: %v", err)
	}
}

// TestEvaluateCedarRPC: inline text and a stored set, Cedar's JSON in, Cedar's
// answer out; malformed JSON is InvalidArgument.
func TestEvaluateCedarRPC(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pc := writv1connect.NewPolicyServiceClient(http.DefaultClient, f.base, adminToken())
	ents := `[{"uid": {"type": "CiJob", "id": "ci/a"}, "attrs": {"owner": "o", "environment": "prod", "kind": "ci_job"}, "parents": []},
	          {"uid": {"type": "Deployment", "id": "d"}, "attrs": {"environment": "prod", "owner": "o", "service": "s"}, "parents": []}]`
	req := `{"principal": "CiJob::\"ci/a\"", "action": "Action::\"deploy\"", "resource": "Deployment::\"d\"", "context": {"ticket": "CHG-1"}}`
	r, err := pc.EvaluateCedar(ctx, connect.NewRequest(&writv1.EvaluateCedarRequest{
		Policies:     &writv1.EvaluateCedarRequest_PolicySet{PolicySet: &writv1.StoredPolicySet{Name: "prod"}},
		EntitiesJson: ents, RequestJson: req, WritSchema: true, ValidateRequest: true,
	}))
	mustOK(t, err)
	if m := r.Msg; m.GetDecision() != "allow" || m.GetPolicyVersion() != 1 || len(m.GetReasons()) != 1 ||
		m.GetReasons()[0].GetId() != "policy0" || m.GetReasons()[0].GetAnnotations()["id"] != "deploy-with-ticket" || !strings.HasPrefix(m.GetReasons()[0].GetPosition(), "prod:") {
		t.Fatalf("stored: %v", m)
	}
	r, err = pc.EvaluateCedar(ctx, connect.NewRequest(&writv1.EvaluateCedarRequest{
		Policies:     &writv1.EvaluateCedarRequest_Cedar{Cedar: `forbid (principal, action, resource) when { resource.nope };`},
		EntitiesJson: ents, RequestJson: req,
	}))
	mustOK(t, err)
	if m := r.Msg; m.GetDecision() != "deny" || m.GetOutcome() != writv1.DecisionOutcome_DECISION_OUTCOME_NO_PERMIT || len(m.GetErrors()) != 1 || m.GetErrors()[0].GetPolicyId() != "policy0" {
		t.Fatalf("inline: %v", m)
	}
	for name, bad := range map[string]*writv1.EvaluateCedarRequest{
		"bad entities": {Policies: &writv1.EvaluateCedarRequest_Cedar{Cedar: open()}, EntitiesJson: "[{", RequestJson: req},
		"bad request":  {Policies: &writv1.EvaluateCedarRequest_Cedar{Cedar: open()}, RequestJson: `{"principal": 3}`},
		"bad policies": {Policies: &writv1.EvaluateCedarRequest_Cedar{Cedar: "permit ("}, RequestJson: req},
		"no policies":  {RequestJson: req},
		"bad schema":   {Policies: &writv1.EvaluateCedarRequest_Cedar{Cedar: open()}, RequestJson: req, Schema: "entity {"},
		"invalid for schema": {Policies: &writv1.EvaluateCedarRequest_Cedar{Cedar: open()}, RequestJson: `{"principal": "Robot::\"r\"", "action": "Action::\"deploy\"", "resource": "Deployment::\"d\""}`,
			WritSchema: true, ValidateRequest: true},
	} {
		if _, err := pc.EvaluateCedar(ctx, connect.NewRequest(bad)); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func open() string { return "permit (principal, action, resource);" }

func adminToken() connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+nodetest.AdminToken)
			return next(ctx, req)
		}
	}))
}

func structString(s string) *structpb.Value { return structpb.NewStringValue(s) }
