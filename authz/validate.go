package authz

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Schema validation. cedar-go's validator lives in x/exp (outside semver);
// go.mod pins cedar-go v1.9.0 and these are the only functions that touch
// the validator, so an upgrade that changes it breaks here and nowhere
// else. Validation runs on the node that receives a write, before anything
// is proposed; Apply never validates (see DESIGN.md, "Validation on write").

// Schema is a parsed and resolved Cedar schema. It is immutable and safe for
// concurrent use.
type Schema struct {
	name     string
	text     []byte
	resolved *resolved.Schema
	v        *validate.Validator
}

// ParseSchema parses a Cedar schema in the human-readable format, or in the
// JSON format when the text starts with '{'. Errors wrap ErrSchema.
func ParseSchema(name string, text []byte) (*Schema, error) {
	var s schema.Schema
	s.SetFilename(name)
	var err error
	if t := bytes.TrimSpace(text); len(t) > 0 && t[0] == '{' {
		err = s.UnmarshalJSON(text)
	} else {
		err = s.UnmarshalCedar(text)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrSchema, name, err)
	}
	r, err := s.Resolve()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrSchema, name, err)
	}
	return &Schema{name: name, text: bytes.Clone(text), resolved: r, v: validate.New(r, validate.WithStrict())}, nil
}

// Name is the name the schema was parsed under.
func (s *Schema) Name() string { return s.name }

// Text is the schema's source text. The slice must not be modified.
func (s *Schema) Text() []byte { return s.text }

// Problem is one reason a policy set is invalid.
type Problem struct {
	// Position is "<set>:<line>:<column>" of the policy (or of the syntax
	// error) the problem is about.
	Position string
	// PolicyID is the policy's @id (or policyN); empty for a syntax error.
	PolicyID string
	// Message says what is wrong, in cedar-go's words.
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Position)
	b.WriteString(": ")
	if p.PolicyID != "" {
		b.WriteString("policy ")
		b.WriteString(p.PolicyID)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in a policy set. It wraps
// ErrInvalidPolicySet (and ErrCompile when the text does not compile).
type ValidationError struct {
	Set      string
	Problems []Problem
	compile  bool
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("authz: policy set ")
	b.WriteString(strconv.Quote(e.Set))
	b.WriteString(" is invalid: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidPolicySet) hold, and ErrCompile for a set
// that does not compile.
func (e *ValidationError) Is(target error) bool {
	return target == ErrInvalidPolicySet || (e.compile && target == ErrCompile)
}

// Validate compiles text (as Compile does) and validates every policy
// against s in strict mode. It returns the compiled set, or a
// *ValidationError naming each problem with its position.
func (s *Schema) Validate(name string, version uint64, text []byte) (*PolicySet, error) {
	ps, err := Compile(name, version, text)
	if err != nil {
		return nil, &ValidationError{Set: name, compile: true, Problems: []Problem{compileProblem(name, version, err)}}
	}
	var problems []Problem
	for i := range ps.iter.list {
		c := &ps.iter.list[i]
		if err := s.v.Policy("", (*xast.Policy)(c.policy.AST())); err != nil {
			for _, e := range flatten(err) {
				problems = append(problems, Problem{Position: position(c.policy), PolicyID: c.ref.ID, Message: e.Error()})
			}
		}
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Set: name, Problems: problems}
	}
	return ps, nil
}

// ValidateRequest checks a Cedar request (principal and resource types,
// the action's appliesTo and the context) against the schema.
func (s *Schema) ValidateRequest(req cedar.Request) error {
	if err := s.v.Request(req); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}

// compileProblem turns a Compile error into a Problem, keeping the
// "<set>:line:col" position Compile puts in its message when there is one.
func compileProblem(name string, version uint64, err error) Problem {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, ErrCompile.Error()+": ")
	msg = strings.TrimPrefix(msg, name+" v"+strconv.FormatUint(version, 10)+": ")
	if i := strings.Index(msg, " at "+name+":"); i >= 0 {
		rest := msg[i+len(" at "):]
		if j := strings.IndexByte(rest, ' '); j > 0 {
			return Problem{Position: rest[:j], Message: strings.TrimSpace(msg[:i] + rest[j:])}
		}
	}
	if strings.HasPrefix(msg, name+":") {
		if j := strings.Index(msg, ": "); j > 0 {
			return Problem{Position: msg[:j], Message: msg[j+2:]}
		}
	}
	return Problem{Position: name, Message: msg}
}

func flatten(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if u, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range u.Unwrap() {
				walk(x)
			}
			return
		}
		out = append(out, e)
	}
	walk(err)
	if len(out) == 0 {
		out = append(out, errors.New("invalid"))
	}
	return out
}

// CheckEntityModel reports whether s describes the entities Decide builds:
// the principal of every identity kind with its attributes, tags and
// parents (role, team, environment). An operator's schema (writ server
// --schema) must extend Writ's, not replace its entity model. Errors wrap
// ErrSchema.
func (s *Schema) CheckEntityModel() error {
	for _, kind := range []string{"workload", "ci_job", "agent", "service_account"} {
		var e entities
		_, err := newRequest(Request{
			Identity: &fsmpb.Identity{Id: "check", Kind: kind, Owner: "o", Environment: "e", Attributes: map[string]string{"k": "v"}},
			Role:     "r", Action: "check", Resource: Resource{Type: "Check", ID: "check"},
		}, &e, nil)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSchema, err)
		}
		if err := s.v.Entity(e.principalEntity()); err != nil {
			return fmt.Errorf("%w: %s: the %s principal Writ builds does not validate: %w", ErrSchema, s.name, kind, err)
		}
		for _, p := range e.parents[:e.nParents] {
			if err := s.v.Entity(types.Entity{UID: p}); err != nil {
				return fmt.Errorf("%w: %s: principal parent %s: %w", ErrSchema, s.name, p.Type, err)
			}
		}
	}
	return nil
}
