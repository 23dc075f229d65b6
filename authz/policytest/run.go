package policytest

import (
	"fmt"
	"slices"

	"github.com/writ-dev/writ/authz"
)

// Result is the outcome of one case.
type Result struct {
	File, Case string
	// Failure is empty when the case passed.
	Failure string
	// Decision is what the set decided (zero for an invalid request).
	Decision authz.Decision
}

// SetProblem is a named set that did not compile or validate.
type SetProblem struct {
	Set, Path string
	Err       error
}

// Summary is what Run found.
type Summary struct {
	Sets    []string // the named sets, validated
	Invalid []SetProblem
	Results []Result
	Passed  int
	Failed  int
}

// OK reports whether every set is valid and every case passed, and there
// was at least one case.
func (s *Summary) OK() bool { return len(s.Invalid) == 0 && s.Failed == 0 && s.Passed > 0 }

// Run validates every named set of d against schema (nil: compile only)
// and runs every case with the indexed evaluator. A case whose set is
// invalid fails.
func Run(d *Dir, schema *authz.Schema) *Summary {
	sum := &Summary{}
	compiled := map[string]*authz.PolicySet{}
	bad := map[string]error{}
	for _, name := range d.SetsOrder {
		ps, err := compileSet(name, d.Sets[name], schema)
		if err != nil {
			bad[name] = err
			sum.Invalid = append(sum.Invalid, SetProblem{Set: name, Path: d.SetPaths[name], Err: err})
			continue
		}
		compiled[name] = ps
		sum.Sets = append(sum.Sets, name)
	}
	for _, f := range d.Files {
		for i := range f.Cases {
			c := &f.Cases[i]
			r := Result{File: f.Path, Case: c.Name}
			r.Decision, r.Failure = runCase(&f, c, d.Sets, compiled, bad, schema)
			if r.Failure == "" {
				sum.Passed++
			} else {
				sum.Failed++
			}
			sum.Results = append(sum.Results, r)
		}
	}
	return sum
}

func compileSet(name string, text []byte, schema *authz.Schema) (*authz.PolicySet, error) {
	if schema != nil {
		return schema.Validate(name, 1, text)
	}
	return authz.Compile(name, 1, text)
}

func runCase(f *File, c *Case, sets map[string][]byte, compiled map[string]*authz.PolicySet, bad map[string]error, schema *authz.Schema) (authz.Decision, string) {
	name, text, inline, err := f.ResolveSet(c, sets)
	if err != nil {
		return authz.Decision{}, err.Error()
	}
	ps := compiled[name]
	if inline {
		// Inline sets exercise Cedar edge cases the schema need not allow.
		if ps, err = authz.Compile(name, 1, text); err != nil {
			return authz.Decision{}, err.Error()
		}
	} else if ps == nil {
		return authz.Decision{}, fmt.Sprintf("policy set %q is invalid: %v", name, bad[name])
	}
	req, err := f.Request(c)
	if err != nil {
		return authz.Decision{}, err.Error()
	}
	dec, err := ps.Decide(req)
	return dec, Check(c.Expect, dec, err)
}

// DiffCases decides every case of d that runs against the set named set,
// once under d's own version of it and once under candidate, and returns
// the cases decided differently. Cases of other sets, inline cases and
// invalid requests are not compared.
func DiffCases(d *Dir, set string, candidate []byte, schema *authz.Schema) (changes []CaseChange, compared int, err error) {
	baseText, ok := d.Sets[set]
	if !ok {
		return nil, 0, fmt.Errorf("no policy set named %q in the directory (have %q)", set, d.SetsOrder)
	}
	base, err := compileSet(set, baseText, schema)
	if err != nil {
		return nil, 0, fmt.Errorf("base: %w", err)
	}
	cand, err := compileSet(set, candidate, schema)
	if err != nil {
		return nil, 0, fmt.Errorf("candidate: %w", err)
	}
	for _, f := range d.Files {
		for i := range f.Cases {
			c := &f.Cases[i]
			name, _, inline, err := f.ResolveSet(c, d.Sets)
			if err != nil || inline || name != set {
				continue
			}
			req, err := f.Request(c)
			if err != nil {
				continue
			}
			changed, _ := authz.Diff(base, cand, []authz.Request{req})
			compared++
			for _, ch := range changed {
				changes = append(changes, CaseChange{File: f.Path, Case: c.Name, Change: ch})
			}
		}
	}
	slices.SortStableFunc(changes, func(a, b CaseChange) int { return int(a.Change.Kind) - int(b.Change.Kind) })
	return changes, compared, nil
}

// CaseChange is a case a candidate decides differently.
type CaseChange struct {
	File, Case string
	Change     authz.Change
}
