package authz

import (
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Bounds on what a request and a policy set may hold.
const (
	// MaxPolicySetBytes bounds the Cedar text Compile accepts.
	MaxPolicySetBytes = 4 << 20
	// MaxTypeBytes bounds an entity type name (Resource.Type) and an action.
	MaxTypeBytes = 128
	// MaxIDBytes bounds an entity id (identity id, role, resource id).
	MaxIDBytes = 512
)

// Request is one authorization question: may Identity, logged in through
// Role, perform Action on Resource, given Context?
type Request struct {
	// Identity is the principal: Cedar entity <PrincipalType(Kind)>::"<Id>"
	// with attributes owner, environment and kind, the identity's
	// attributes as tags, and parents Role::"<Role>" (when Role is not
	// empty), Team::"<Owner>" and Environment::"<Environment>" (when not
	// empty). Decide never modifies it, and the caller must not either once
	// it has been decided on: a set from an Engine caches the principal's
	// records per Identity pointer (fsm records are immutable, so a stored
	// record qualifies).
	Identity *fsmpb.Identity
	Role     string
	// Action is the id of Action::"<Action>".
	Action   string
	Resource Resource
	// Context is decoded JSON, as from structpb.Struct.AsMap(): see
	// DESIGN.md for how each value becomes a Cedar value.
	Context map[string]any
	// Converted, when set, holds some of Context's keys already converted
	// (ConvertValue of the very value Context holds under the key): Decide
	// uses them instead of converting those values again. Context must
	// still hold every key; only Decide's conversion is skipped.
	Converted map[string]Converted
}

// Resource is the entity acted on: <Type>::"<ID>" with Attributes (same
// conversion rules as the context) and no parents.
type Resource struct {
	// Type is a Cedar entity type name: identifiers joined by "::",
	// at most MaxTypeBytes.
	Type string
	// ID is non-empty, at most MaxIDBytes.
	ID         string
	Attributes map[string]any
}

// PolicyRef names a policy of a set.
type PolicyRef struct {
	// ID is the policy's @id annotation, or "policyN" for the N-th policy
	// (counting from 0) when it has none.
	ID string
	// Annotations are all of the policy's annotations (@id included). The
	// map is shared by every decision that cites the policy: do not modify it.
	Annotations map[string]string
}

// Decision is the outcome of one request.
type Decision struct {
	Allowed bool
	// Determining are the permits that matched when allowed, the forbids
	// that matched when denied by a forbid, and empty when no permit matched.
	// In policy-set order.
	Determining []PolicyRef
	// Errors has one "policy <id>: <message>" per policy whose evaluation
	// failed. Cedar skips such policies: an erroring forbid does not deny.
	Errors []string
	// PolicyErrors are the same errors with the policy that failed.
	PolicyErrors []PolicyError
	// Outcome says which of the three ways the decision went.
	Outcome Outcome
	// Reason is a one-line explanation for people and logs.
	Reason    string
	PolicySet string
	Version   uint64
}

// Outcome is how a decision was reached.
type Outcome uint8

// The outcomes of a decision.
const (
	// OutcomeNone is the zero value: no decision was made.
	OutcomeNone Outcome = iota
	// OutcomeAllowed: some permit matched and no forbid did.
	OutcomeAllowed
	// OutcomeForbidden: a forbid matched (Determining lists them).
	OutcomeForbidden
	// OutcomeNoPermit: nothing matched; Cedar denies by default.
	OutcomeNoPermit
)

func (o Outcome) String() string {
	switch o {
	case OutcomeAllowed:
		return "allowed"
	case OutcomeForbidden:
		return "forbidden"
	case OutcomeNoPermit:
		return "no_permit"
	}
	return "none"
}

// PolicyError is one policy whose evaluation failed.
type PolicyError struct {
	Policy  PolicyRef
	Message string
}

// compiled is one policy of a set with the name Writ gives it.
type compiled struct {
	id     types.PolicyID
	policy *cedar.Policy
	ref    PolicyRef
	scope  policyScope
}

// policyIter hands cedar.Authorize every policy of the set (DecideAll).
// Decide hands it only candidates (index.go).
type policyIter struct{ list []compiled }

func (it *policyIter) All() iter.Seq2[types.PolicyID, *cedar.Policy] {
	return func(yield func(types.PolicyID, *cedar.Policy) bool) {
		for i := range it.list {
			if !yield(it.list[i].id, it.list[i].policy) {
				return
			}
		}
	}
}

// PolicySet is a compiled, immutable policy set. It is safe for concurrent
// use by any number of goroutines.
type PolicySet struct {
	name    string
	version uint64
	size    int // bytes of Cedar text, a cheap guard in Engine.Get
	iter    policyIter
	byID    map[types.PolicyID]int
	index   index
	// principals, set by Engine.Get, caches principal records across
	// decisions; nil for a set from Compile.
	principals *principalCache
	// scratch recycles the maps converting a request's records uses.
	scratch sync.Pool
}

// Compile parses Cedar policy text into a PolicySet. Every error wraps
// ErrCompile and, for a syntax error, names the position as
// <name>:<line>:<column>. Policies are named by their @id annotation
// (which must be non-empty and unique), else "policyN" by position.
//
// Compile does not validate the policies against a schema (Schema.Validate
// does).
func Compile(name string, version uint64, text []byte) (*PolicySet, error) {
	return compile(name, version, text, false)
}

// compile is Compile; with cedarIDs every policy is named policyN by
// position, as Cedar names them, and @id is only an annotation.
func compile(name string, version uint64, text []byte, cedarIDs bool) (*PolicySet, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s v%d: %s", ErrCompile, name, version, fmt.Sprintf(format, args...))
	}
	if len(text) > MaxPolicySetBytes {
		return nil, fail("%d bytes of policy text; at most %d", len(text), MaxPolicySetBytes)
	}
	list, err := cedar.NewPolicyListFromBytes(name, text)
	if err != nil {
		// cedar-go reports positions as "<input>:line:col"; name the set instead.
		msg := strings.TrimPrefix(err.Error(), "parser error: ")
		msg = strings.Replace(msg, " at <input>:", " at "+name+":", 1)
		return nil, fail("%s", msg)
	}
	ps := &PolicySet{
		name:    name,
		version: version,
		size:    len(text),
		iter:    policyIter{list: make([]compiled, 0, len(list))},
		byID:    make(map[types.PolicyID]int, len(list)),
	}
	for i, p := range list {
		ann := make(map[string]string, len(p.Annotations()))
		for k, v := range p.Annotations() {
			ann[string(k)] = string(v)
		}
		id, ok := ann["id"]
		switch {
		case cedarIDs:
			id = policyName(i)
		case ok && id == "":
			return nil, fail("%s: empty @id", position(p))
		case !ok:
			id = policyName(i)
		}
		if j, dup := ps.byID[types.PolicyID(id)]; dup {
			return nil, fail("%s: policy id %q is already used by the policy at %s", position(p), id, position(ps.iter.list[j].policy))
		}
		ps.byID[types.PolicyID(id)] = i
		ps.iter.list = append(ps.iter.list, compiled{
			id:     types.PolicyID(id),
			policy: p,
			ref:    PolicyRef{ID: id, Annotations: ann},
			scope:  policyScopeOf(p),
		})
	}
	ps.index = buildIndex(ps.iter.list)
	return ps, nil
}

func position(p *cedar.Policy) string {
	pos := p.Position()
	return pos.Filename + ":" + strconv.Itoa(pos.Line) + ":" + strconv.Itoa(pos.Column)
}

// Name is the policy set's name.
func (ps *PolicySet) Name() string { return ps.name }

// Version is the policy set's version.
func (ps *PolicySet) Version() uint64 { return ps.version }

// Len is the number of policies.
func (ps *PolicySet) Len() int { return len(ps.iter.list) }

// Policies lists the policies in text order. The slice is the caller's;
// the Annotations maps are shared and must not be modified.
func (ps *PolicySet) Policies() []PolicyRef {
	out := make([]PolicyRef, len(ps.iter.list))
	for i := range ps.iter.list {
		out[i] = ps.iter.list[i].ref
	}
	return out
}

// Decide evaluates req against the policy set. It returns an error
// (wrapping ErrInvalidRequest) only when the request is malformed; a policy
// that fails to evaluate is reported in Decision.Errors instead.
//
// Only the policies whose scope matches the request are evaluated (see
// index.go); the decision is identical to DecideAll's.
func (ps *PolicySet) Decide(req Request) (Decision, error) {
	call := new(decideCall)
	creq, err := newRequest(req, &call.ents, &ps.scratch)
	if err != nil {
		return Decision{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	call.ents.cache = ps.principals
	call.cands = candidates{ps: ps, ents: &call.ents}
	dec, diag := cedar.Authorize(&call.cands, &call.ents, creq)
	return ps.decision(dec, diag), nil
}

// decideCall holds what one Decide call hands cedar.Authorize, in one
// allocation.
type decideCall struct {
	ents  entities
	cands candidates
}

// DecideAll is Decide evaluating every policy of the set, the reference the
// indexed Decide is tested and measured against.
func (ps *PolicySet) DecideAll(req Request) (Decision, error) {
	ents := new(entities)
	creq, err := newRequest(req, ents, &ps.scratch)
	if err != nil {
		return Decision{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	ents.cache = ps.principals
	dec, diag := cedar.Authorize(&ps.iter, ents, creq)
	return ps.decision(dec, diag), nil
}

func (ps *PolicySet) decision(dec cedar.Decision, diag cedar.Diagnostic) Decision {
	out := Decision{
		Allowed:   dec == cedar.Allow,
		PolicySet: ps.name,
		Version:   ps.version,
	}
	if len(diag.Reasons) > 0 {
		out.Determining = make([]PolicyRef, len(diag.Reasons))
		for i, r := range diag.Reasons {
			out.Determining[i] = ps.iter.list[ps.byID[r.PolicyID]].ref
		}
	}
	if len(diag.Errors) > 0 {
		out.Errors = make([]string, len(diag.Errors))
		out.PolicyErrors = make([]PolicyError, len(diag.Errors))
		for i, e := range diag.Errors {
			out.Errors[i] = "policy " + string(e.PolicyID) + ": " + e.Message
			out.PolicyErrors[i] = PolicyError{Policy: ps.iter.list[ps.byID[e.PolicyID]].ref, Message: e.Message}
		}
	}
	switch {
	case out.Allowed:
		out.Outcome = OutcomeAllowed
	case len(out.Determining) > 0:
		out.Outcome = OutcomeForbidden
	default:
		out.Outcome = OutcomeNoPermit
	}
	out.Reason = reason(out)
	return out
}

func reason(d Decision) string {
	ids := func() string {
		s := make([]string, len(d.Determining))
		for i, p := range d.Determining {
			s[i] = p.ID
		}
		return strings.Join(s, ", ")
	}
	var r string
	switch {
	case d.Allowed:
		r = "allowed by " + ids()
	case len(d.Determining) > 0:
		r = "denied by forbid " + ids()
	default:
		r = "no permit matched"
	}
	if n := len(d.Errors); n == 1 {
		r += " (1 policy failed to evaluate)"
	} else if n > 1 {
		r += " (" + strconv.Itoa(n) + " policies failed to evaluate)"
	}
	return r
}

// newRequest checks req and turns it into the Cedar request, filling e, the
// entity getter for it.
func newRequest(req Request, e *entities, pool *sync.Pool) (cedar.Request, error) {
	ident := req.Identity
	if ident == nil {
		return cedar.Request{}, fmt.Errorf("identity is required")
	}
	if err := checkID("identity id", ident.GetId()); err != nil {
		return cedar.Request{}, err
	}
	ptype, err := principalType(ident.GetKind())
	if err != nil {
		return cedar.Request{}, fmt.Errorf("identity %q: %w", ident.GetId(), err)
	}
	if req.Action == "" {
		return cedar.Request{}, fmt.Errorf("action is required")
	}
	if len(req.Action) > MaxTypeBytes {
		return cedar.Request{}, fmt.Errorf("action is %d bytes; at most %d", len(req.Action), MaxTypeBytes)
	}
	if err := checkType(req.Resource.Type); err != nil {
		return cedar.Request{}, err
	}
	if err := checkID("resource id", req.Resource.ID); err != nil {
		return cedar.Request{}, err
	}
	if len(req.Role) > MaxIDBytes {
		return cedar.Request{}, fmt.Errorf("role is %d bytes; at most %d", len(req.Role), MaxIDBytes)
	}
	resAttrs, err := recordFromMap("resource", req.Resource.Attributes, nil, pool)
	if err != nil {
		return cedar.Request{}, err
	}
	ctx, err := recordFromMap("context", req.Context, req.Converted, pool)
	if err != nil {
		return cedar.Request{}, err
	}

	*e = entities{
		ident:     ident,
		role:      req.Role,
		principal: types.NewEntityUID(ptype, types.String(ident.GetId())),
		action:    types.NewEntityUID(typeAction, types.String(req.Action)),
		resource: types.Entity{
			UID:        types.NewEntityUID(types.EntityType(req.Resource.Type), types.String(req.Resource.ID)),
			Attributes: resAttrs,
		},
	}
	if req.Role != "" {
		e.parents[e.nParents] = types.NewEntityUID(typeRole, types.String(req.Role))
		e.nParents++
	}
	if o := ident.GetOwner(); o != "" {
		e.parents[e.nParents] = types.NewEntityUID(typeTeam, types.String(o))
		e.nParents++
	}
	if env := ident.GetEnvironment(); env != "" {
		e.parents[e.nParents] = types.NewEntityUID(typeEnvironment, types.String(env))
		e.nParents++
	}
	return cedar.Request{
		Principal: e.principal,
		Action:    e.action,
		Resource:  e.resource.UID,
		Context:   ctx,
	}, nil
}

func checkID(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is required", what)
	}
	if len(s) > MaxIDBytes {
		return fmt.Errorf("%s is %d bytes; at most %d", what, len(s), MaxIDBytes)
	}
	return nil
}

// checkType accepts a Cedar entity type name: one or more identifiers
// ([A-Za-z_][A-Za-z0-9_]*) joined by "::". "Action" is reserved.
func checkType(t string) error {
	if t == "" {
		return fmt.Errorf("resource type is required")
	}
	if len(t) > MaxTypeBytes {
		return fmt.Errorf("resource type is %d bytes; at most %d", len(t), MaxTypeBytes)
	}
	for part := range strings.SplitSeq(t, "::") {
		if !isIdent(part) {
			return fmt.Errorf("resource type %q is not a Cedar type name (identifiers joined by ::)", t)
		}
	}
	if t == string(typeAction) || strings.HasSuffix(t, "::Action") {
		return fmt.Errorf("resource type %q is reserved for actions", t)
	}
	return nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
