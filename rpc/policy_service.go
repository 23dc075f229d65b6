package rpc

import (
	"context"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// policyService: history, rollback, validation, plain Cedar evaluation,
// diffs and shadow counters. Every call is authenticated by the admin
// interceptor.
//
// Why validation is not in Apply: Apply must not run Cedar (a replay with
// a newer cedar-go, whose validator lives outside semver, could then accept
// or refuse differently and replicas would diverge). So the node that
// receives a write validates before proposing, and Apply only stores facts.
// A set that entered the log under an older, more lenient validator stays
// active after an upgrade; the next Put or Rollback of it is validated by
// the new one.
type policyService struct{ d Deps }

func (s *policyService) admin() *adminService { return &adminService{d: s.d} }

func (s *policyService) ListPolicySetVersions(ctx context.Context, req *connect.Request[writv1.ListPolicySetVersionsRequest]) (*connect.Response[writv1.ListPolicySetVersionsResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	name := req.Msg.GetName()
	versions := view.PolicySetVersions(name)
	if len(versions) == 0 {
		return nil, newError(connect.CodeNotFound, "not_found", "policy set "+quote(name)+" has no stored versions", nil)
	}
	out := &writv1.ListPolicySetVersionsResponse{AppliedIndex: view.Index()}
	if active, ok := view.PolicySet(name); ok {
		out.ActiveVersion = active.GetVersion()
	}
	for _, v := range versions {
		api := policySetToAPI(v)
		if !req.Msg.GetIncludeCedar() {
			api.Cedar = ""
		}
		out.Versions = append(out.Versions, api)
	}
	return connect.NewResponse(out), nil
}

func (s *policyService) RollbackPolicySet(ctx context.Context, req *connect.Request[writv1.RollbackPolicySetRequest]) (*connect.Response[writv1.RollbackPolicySetResponse], error) {
	m := req.Msg
	if err := checkLen("name", m.GetName(), 128); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	if m.GetVersion() == 0 {
		return nil, toConnect(s.d.Logger, invalidf("version is required"))
	}
	view, err := s.d.Backend.Read(ctx, ReadOptions{})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	old, ok := view.PolicySetVersion(m.GetName(), m.GetVersion())
	if !ok {
		return nil, newError(connect.CodeNotFound, "not_found", "policy set "+quote(m.GetName())+" has no version "+u64s(m.GetVersion())+" in its history", nil)
	}
	// The schema may have changed since that version was written.
	if _, err := s.d.Schema.Validate(m.GetName(), 0, []byte(old.GetCedar())); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	desc := m.GetDescription()
	if desc == "" {
		desc = "rollback to v" + u64s(m.GetVersion())
	}
	a := s.admin()
	r, err := a.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_PutPolicySet{PutPolicySet: &fsmpb.PutPolicySet{
		PolicySet:     &fsmpb.PolicySet{Name: m.GetName(), Cedar: old.GetCedar(), Description: desc, RolledBackFrom: m.GetVersion()},
		ExpectVersion: m.GetExpectVersion(),
		KeepVersions:  PolicyHistoryVersions,
	}}})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	after, err := a.readAfter(ctx, r.GetIndex())
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	stored, _ := after.PolicySetVersion(m.GetName(), r.GetVersion())
	return connect.NewResponse(&writv1.RollbackPolicySetResponse{PolicySet: policySetToAPI(stored), Index: r.GetIndex()}), nil
}

func (s *policyService) ValidatePolicySet(_ context.Context, req *connect.Request[writv1.ValidatePolicySetRequest]) (*connect.Response[writv1.ValidatePolicySetResponse], error) {
	name := req.Msg.GetName()
	if name == "" {
		name = "policy"
	}
	if len(req.Msg.GetCedar()) > MaxPolicyBytes {
		return nil, toConnect(s.d.Logger, invalidf("policy text is %d bytes; at most %d", len(req.Msg.GetCedar()), MaxPolicyBytes))
	}
	ps, err := s.d.Schema.Validate(name, 0, []byte(req.Msg.GetCedar()))
	out := &writv1.ValidatePolicySetResponse{Valid: err == nil}
	if err != nil {
		ve, ok := err.(*authz.ValidationError)
		if !ok {
			return nil, toConnect(s.d.Logger, err)
		}
		for _, p := range ve.Problems {
			out.Problems = append(out.Problems, &writv1.PolicyProblem{Position: p.Position, PolicyId: p.PolicyID, Message: p.Message})
		}
	} else {
		out.Policies = uint32(ps.Len())
	}
	return connect.NewResponse(out), nil
}

func (s *policyService) EvaluateCedar(ctx context.Context, req *connect.Request[writv1.EvaluateCedarRequest]) (*connect.Response[writv1.EvaluateCedarResponse], error) {
	m := req.Msg
	in := authz.CedarInput{
		Entities: []byte(m.GetEntitiesJson()), Request: []byte(m.GetRequestJson()),
		ValidateRequest: m.GetValidateRequest(),
	}
	switch {
	case m.GetSchema() != "" && m.GetWritSchema():
		return nil, toConnect(s.d.Logger, invalidf("give schema or writ_schema, not both"))
	case m.GetSchema() != "":
		sc, err := authz.ParseSchema("schema", []byte(m.GetSchema()))
		if err != nil {
			return nil, toConnect(s.d.Logger, invalidf("%v", err))
		}
		in.Schema = sc
	case m.GetWritSchema():
		in.Schema = s.d.Schema
	}
	out := &writv1.EvaluateCedarResponse{}
	switch p := m.GetPolicies().(type) {
	case *writv1.EvaluateCedarRequest_Cedar:
		in.Policies = []byte(p.Cedar)
	case *writv1.EvaluateCedarRequest_PolicySet:
		view, err := s.d.Backend.Read(ctx, readOptions(m.GetRead()))
		if err != nil {
			return nil, toConnect(s.d.Logger, err)
		}
		name, v := p.PolicySet.GetName(), p.PolicySet.GetVersion()
		stored, ok := view.PolicySet(name)
		if v != 0 {
			stored, ok = view.PolicySetVersion(name, v)
		}
		if !ok {
			return nil, newError(connect.CodeNotFound, "not_found", "policy set "+quote(name)+" not found", nil)
		}
		in.Name, in.Policies = name, []byte(stored.GetCedar())
		out.PolicySet, out.PolicyVersion = name, stored.GetVersion()
	default:
		return nil, toConnect(s.d.Logger, invalidf("cedar or policy_set is required"))
	}
	ans, err := authz.EvalCedarJSON(in)
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	out.Decision = "deny"
	if ans.Allowed {
		out.Decision = "allow"
	}
	out.Outcome = outcomeToAPI(ans.Outcome)
	for _, r := range ans.Reasons {
		out.Reasons = append(out.Reasons, &writv1.CedarPolicyRef{Id: r.ID, Annotations: r.Annotations, Position: r.Position})
	}
	for _, e := range ans.Errors {
		out.Errors = append(out.Errors, &writv1.CedarPolicyError{PolicyId: e.PolicyID, Message: e.Message})
	}
	return connect.NewResponse(out), nil
}

func (s *policyService) DiffPolicySet(ctx context.Context, req *connect.Request[writv1.DiffPolicySetRequest]) (*connect.Response[writv1.DiffPolicySetResponse], error) {
	m := req.Msg
	if len(m.GetCedar()) > MaxPolicyBytes {
		return nil, toConnect(s.d.Logger, invalidf("policy text is %d bytes; at most %d", len(m.GetCedar()), MaxPolicyBytes))
	}
	view, err := s.d.Backend.Read(ctx, readOptions(m.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	active, ok := view.PolicySet(m.GetName())
	if !ok {
		return nil, newError(connect.CodeNotFound, "not_found", "policy set "+quote(m.GetName())+" not found", nil)
	}
	base, err := s.d.Engine.Get(active)
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	cand, err := s.d.Schema.Validate(m.GetName(), 0, []byte(m.GetCedar()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	recent := s.d.Policy.sampler.Recent(m.GetName())
	changes, invalid := authz.Diff(base, cand, recent)
	limit := int(m.GetLimit())
	if limit == 0 {
		limit = 100
	}
	out := &writv1.DiffPolicySetResponse{
		Replayed: uint32(len(recent)), Invalid: uint32(invalid),
		ActiveVersion: active.GetVersion(), NodeId: s.d.Backend.NodeID(),
	}
	for _, c := range changes {
		switch c.Kind {
		case authz.Widened:
			out.Widened++
		case authz.Narrowed:
			out.Narrowed++
		case authz.Reasoned:
			out.Reasons++
		}
		if len(out.Changes) < limit {
			out.Changes = append(out.Changes, changeToAPI(c))
		}
	}
	return connect.NewResponse(out), nil
}

func changeToAPI(c authz.Change) *writv1.DecisionChange {
	r := c.Request
	p := r.Identity.GetId()
	if t, err := authz.PrincipalType(r.Identity.GetKind()); err == nil {
		p = t + "::" + quote(p)
	}
	return &writv1.DecisionChange{
		Kind: c.Kind.String(), Principal: p, Action: r.Action,
		Resource: r.Resource.Type + "::" + quote(r.Resource.ID),
		Active:   decisionToAPI(c.Base, ""), Candidate: decisionToAPI(c.Candidate, ""),
	}
}

func (s *policyService) GetShadowStatus(context.Context, *connect.Request[writv1.GetShadowStatusRequest]) (*connect.Response[writv1.GetShadowStatusResponse], error) {
	out := &writv1.GetShadowStatusResponse{NodeId: s.d.Backend.NodeID()}
	for name, c := range s.d.Policy.Shadow().Counts() {
		out.Sets = append(out.Sets, &writv1.ShadowSetStatus{
			PolicySet: name, CandidateVersion: c.CandidateVersion, Evaluations: c.Evaluations,
			Disagreements: c.Disagreements, Widened: c.Widened, Narrowed: c.Narrowed, Reasons: c.Reasoned,
			CandidateErrors: c.CandidateErrors,
		})
	}
	sortShadow(out.Sets)
	return connect.NewResponse(out), nil
}

func sortShadow(s []*writv1.ShadowSetStatus) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && strings.Compare(s[j-1].GetPolicySet(), s[j].GetPolicySet()) > 0; j-- {
			s[j-1], s[j] = s[j], s[j-1]
		}
	}
}

func outcomeToAPI(o authz.Outcome) writv1.DecisionOutcome {
	switch o {
	case authz.OutcomeAllowed:
		return writv1.DecisionOutcome_DECISION_OUTCOME_ALLOWED
	case authz.OutcomeForbidden:
		return writv1.DecisionOutcome_DECISION_OUTCOME_FORBIDDEN
	case authz.OutcomeNoPermit:
		return writv1.DecisionOutcome_DECISION_OUTCOME_NO_PERMIT
	}
	return writv1.DecisionOutcome_DECISION_OUTCOME_UNSPECIFIED
}

func u64s(v uint64) string { return strconv.FormatUint(v, 10) }
