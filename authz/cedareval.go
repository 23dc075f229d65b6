package authz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	exptypes "github.com/cedar-policy/cedar-go/x/exp/types"
)

// Plain Cedar evaluation: Cedar's own inputs (policy text, the standard
// JSON entities, a request) answered exactly as Cedar answers them, so
// that teams can check Writ against their Cedar tooling and test suites.
// Policies are named as Cedar names them (policy0, policy1, ... by
// position, whatever their @id), and the answer goes through the same
// scope index as Writ's own decisions.

// MaxEntitiesBytes bounds the JSON entities EvaluateCedar accepts.
const MaxEntitiesBytes = 4 << 20

// CedarRequest is one request in Cedar's terms.
type CedarRequest struct {
	Principal, Action, Resource types.EntityUID
	Context                     types.Record
}

// CedarAnswer is Cedar's answer to one request.
type CedarAnswer struct {
	Allowed bool
	// Reasons are the determining policies (Cedar's diagnostic reasons) in
	// policy-text order.
	Reasons []CedarPolicy
	// Errors are the policies whose evaluation failed, in order.
	Errors []CedarError
	// Outcome is OutcomeAllowed, OutcomeForbidden or OutcomeNoPermit.
	Outcome Outcome
}

// CedarPolicy is a policy cited by an answer: Cedar's id, the policy's
// annotations (@id, @reason, ...) and where it starts.
type CedarPolicy struct {
	ID          string
	Annotations map[string]string
	Position    string
}

// CedarError is one policy's evaluation error.
type CedarError struct {
	PolicyID string
	Message  string
}

// CompileCedar compiles policy text naming the policies as Cedar does
// (policyN by position), for EvaluateCedar. Errors wrap ErrCompile.
func CompileCedar(name string, text []byte) (*PolicySet, error) {
	return compile(name, 0, text, true)
}

// ParseEntities decodes Cedar's JSON entity format. With a schema, values
// are read as the schema types them (strings as extension values, records
// as entity references), exactly as Cedar does when given a schema.
func ParseEntities(b []byte, s *Schema) (types.EntityMap, error) {
	if len(b) > MaxEntitiesBytes {
		return nil, fmt.Errorf("%w: entities are %d bytes; at most %d", ErrInvalidRequest, len(b), MaxEntitiesBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return types.EntityMap{}, nil
	}
	if s != nil {
		var em exptypes.EntityMap
		if err := em.UnmarshalJSONWithSchema(b, s.resolved); err != nil {
			return nil, fmt.Errorf("%w: entities: %w", ErrInvalidRequest, err)
		}
		return types.EntityMap(em), nil
	}
	var em types.EntityMap
	if err := em.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("%w: entities: %w", ErrInvalidRequest, err)
	}
	return em, nil
}

// ParseCedarRequest decodes a request in the JSON form Cedar's tools use:
//
//	{"principal": ..., "action": ..., "resource": ..., "context": {...}}
//
// where each entity is {"type": "T", "id": "i"}, {"__entity": {...}} or the
// string `T::"i"`, and context is a Cedar JSON record (may be absent).
func ParseCedarRequest(b []byte) (CedarRequest, error) {
	var in struct {
		Principal, Action, Resource json.RawMessage
		Context                     json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return CedarRequest{}, fmt.Errorf("%w: request: %w", ErrInvalidRequest, err)
	}
	var out CedarRequest
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *types.EntityUID
	}{{"principal", in.Principal, &out.Principal}, {"action", in.Action, &out.Action}, {"resource", in.Resource, &out.Resource}} {
		uid, err := parseUID(f.raw)
		if err != nil {
			return CedarRequest{}, fmt.Errorf("%w: request %s: %w", ErrInvalidRequest, f.name, err)
		}
		*f.dst = uid
	}
	if len(in.Context) > 0 && string(in.Context) != "null" {
		if err := out.Context.UnmarshalJSON(in.Context); err != nil {
			return CedarRequest{}, fmt.Errorf("%w: request context: %w", ErrInvalidRequest, err)
		}
	}
	return out, nil
}

func parseUID(raw json.RawMessage) (types.EntityUID, error) {
	var uid types.EntityUID
	if len(raw) == 0 || string(raw) == "null" {
		return uid, fmt.Errorf("is required")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return uid, err
		}
		if err := uid.UnmarshalCedar([]byte(s)); err != nil {
			return uid, fmt.Errorf("%q is not an entity (Type::\"id\"): %w", s, err)
		}
		return uid, nil
	}
	return uid, uid.UnmarshalJSON(raw)
}

// EvaluateCedar answers req against ps (from CompileCedar, or Compile when
// the caller wants Writ's @id names) over the entities em, as Cedar does.
// Only the policies whose scope matches are evaluated; wholeSet evaluates
// every policy instead (the reference the corpus test compares against).
func (ps *PolicySet) EvaluateCedar(em types.EntityGetter, req CedarRequest, wholeSet bool) CedarAnswer {
	creq := cedar.Request{Principal: req.Principal, Action: req.Action, Resource: req.Resource, Context: req.Context}
	var it cedar.PolicyIterator = &ps.iter
	if !wholeSet {
		q := scopeRequest{p: req.Principal, a: req.Action, r: req.Resource}
		q.pAnc, q.aAnc, q.rAnc = mapAncestors(em, q.p), mapAncestors(em, q.a), mapAncestors(em, q.r)
		it = &mapCandidates{ps: ps, q: &q}
	}
	dec, diag := cedar.Authorize(it, em, creq)
	out := CedarAnswer{Allowed: dec == cedar.Allow}
	for _, r := range diag.Reasons {
		out.Reasons = append(out.Reasons, ps.cedarPolicy(r.PolicyID))
	}
	for _, e := range diag.Errors {
		out.Errors = append(out.Errors, CedarError{PolicyID: string(e.PolicyID), Message: e.Message})
	}
	switch {
	case out.Allowed:
		out.Outcome = OutcomeAllowed
	case len(out.Reasons) > 0:
		out.Outcome = OutcomeForbidden
	default:
		out.Outcome = OutcomeNoPermit
	}
	return out
}

func (ps *PolicySet) cedarPolicy(id types.PolicyID) CedarPolicy {
	c := &ps.iter.list[ps.byID[id]]
	return CedarPolicy{ID: c.ref.ID, Annotations: c.ref.Annotations, Position: position(c.policy)}
}

// mapCandidates is the candidate iterator of a plain Cedar request.
type mapCandidates struct {
	ps *PolicySet
	q  *scopeRequest
}

func (c *mapCandidates) All() iter.Seq2[types.PolicyID, *cedar.Policy] {
	return func(yield func(types.PolicyID, *cedar.Policy) bool) {
		c.ps.eachCandidate(c.q, yield)
	}
}

// mapAncestors returns every entity reachable from uid through parents, as
// Cedar's `in` walks them: parents of entities the getter knows; an entity
// it does not know has no parents.
func mapAncestors(em types.EntityGetter, uid types.EntityUID) []types.EntityUID {
	var out []types.EntityUID
	seen := map[types.EntityUID]bool{}
	todo := []types.EntityUID{uid}
	for len(todo) > 0 {
		cur := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		e, ok := em.Get(cur)
		if !ok {
			continue
		}
		for p := range e.Parents.All() {
			if seen[p] {
				continue
			}
			seen[p] = true
			out = append(out, p)
			todo = append(todo, p)
		}
	}
	return out
}

// policyName is Cedar's name for the i-th policy of a set.
func policyName(i int) string { return "policy" + strconv.Itoa(i) }

// CedarInput is a plain Cedar evaluation as the RPC and `writ policy eval`
// receive it: Cedar text, the standard JSON entities and a JSON request,
// with an optional schema.
type CedarInput struct {
	// Name labels the policy text in positions ("inline" when empty).
	Name     string
	Policies []byte
	// Set, when not nil, is used instead of compiling Policies.
	Set      *PolicySet
	Entities []byte
	Request  []byte
	// Schema, when set, types the entities (schema-guided JSON decoding).
	Schema *Schema
	// ValidateRequest also checks the request against Schema.
	ValidateRequest bool
	// WholeSet evaluates every policy instead of the scope candidates.
	WholeSet bool
}

// EvalCedarJSON runs one plain Cedar evaluation. Errors wrap ErrCompile
// (policy text) or ErrInvalidRequest (entities, request, schema check).
func EvalCedarJSON(in CedarInput) (CedarAnswer, error) {
	ps := in.Set
	if ps == nil {
		name := in.Name
		if name == "" {
			name = "inline"
		}
		var err error
		if ps, err = CompileCedar(name, in.Policies); err != nil {
			return CedarAnswer{}, err
		}
	}
	em, err := ParseEntities(in.Entities, in.Schema)
	if err != nil {
		return CedarAnswer{}, err
	}
	req, err := ParseCedarRequest(in.Request)
	if err != nil {
		return CedarAnswer{}, err
	}
	if in.ValidateRequest && in.Schema != nil {
		if err := in.Schema.ValidateRequest(cedar.Request{Principal: req.Principal, Action: req.Action, Resource: req.Resource, Context: req.Context}); err != nil {
			return CedarAnswer{}, err
		}
	}
	return ps.EvaluateCedar(em, req, in.WholeSet), nil
}
