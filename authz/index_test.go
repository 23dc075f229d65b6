package authz

import (
	"flag"
	"fmt"
	"iter"
	"math/rand/v2"
	"strings"
	"testing"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/ast"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

var (
	equivSeed = flag.Uint64("equiv.seed", 1, "seed of TestIndexedEqualsWholeSet")
	equivSets = flag.Int("equiv.sets", 400, "policy sets TestIndexedEqualsWholeSet generates")
)

// Small pools so that scopes often match: principal ids double as resource
// ids (a resource can be the principal), owners and environments double as
// Team and Environment ids (a resource can be a principal's parent).
var (
	genKinds   = []string{"workload", "ci_job", "agent", "service_account"}
	genPTypes  = []string{"Workload", "CiJob", "Agent", "ServiceAccount"}
	genIDs     = []string{"a", "b", "c"}
	genOwners  = []string{"t1", "t2", ""}
	genEnvs    = []string{"prod", "dev", ""}
	genRoles   = []string{"r1", "r2", ""}
	genActions = []string{"read", "write", "deploy", "backup"}
	genRTypes  = []string{"Secret", "Database", "Workload", "Team", "Role"}
	genRIDs    = []string{"a", "b", "s1", "t1", "r1"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// genEntity is an entity any scope may name: principals, parents, resources,
// and ones no request reaches.
func genEntity(r *rand.Rand) string {
	switch r.IntN(7) {
	case 0:
		return fmt.Sprintf(`%s::%q`, pick(r, genPTypes), pick(r, genIDs))
	case 1:
		return fmt.Sprintf(`Team::%q`, pick(r, genOwners[:2]))
	case 2:
		return fmt.Sprintf(`Environment::%q`, pick(r, genEnvs[:2]))
	case 3:
		return fmt.Sprintf(`Role::%q`, pick(r, genRoles[:2]))
	case 4:
		return fmt.Sprintf(`%s::%q`, pick(r, genRTypes), pick(r, genRIDs))
	case 5:
		return fmt.Sprintf(`Action::%q`, pick(r, genActions))
	}
	return `Nowhere::"x"`
}

func genType(r *rand.Rand) string {
	if r.IntN(2) == 0 {
		return pick(r, genPTypes)
	}
	return pick(r, genRTypes)
}

// genVarScope is a principal or resource scope: any, ==, in, is, is-in.
func genVarScope(r *rand.Rand, v string) string {
	switch r.IntN(6) {
	case 0:
		return v
	case 1:
		return v + " == " + genEntity(r)
	case 2, 3:
		return v + " in " + genEntity(r)
	case 4:
		return v + " is " + genType(r)
	}
	return v + " is " + genType(r) + " in " + genEntity(r)
}

func genAction(r *rand.Rand) string {
	if r.IntN(8) == 0 {
		return `Action::"nothing"`
	}
	return fmt.Sprintf(`Action::%q`, pick(r, genActions))
}

func genActionScope(r *rand.Rand) string {
	switch r.IntN(5) {
	case 0:
		return "action"
	case 1:
		return "action == " + genAction(r)
	case 2:
		return "action in " + genAction(r)
	}
	n := 1 + r.IntN(3)
	acts := make([]string, n)
	for i := range acts {
		acts[i] = genAction(r) // duplicates allowed
	}
	return "action in [" + strings.Join(acts, ", ") + "]"
}

// genConditions are conditions that hold, fail, or error (missing attribute
// or tag, wrong type) depending on the request.
var genConditions = []string{
	``,
	``,
	` when { true }`,
	` when { false }`,
	` when { context.flag }`, // errors when flag is absent
	` when { context has flag && context.flag }`,
	` when { resource.owner == principal.owner }`, // errors when the resource has no owner
	` unless { resource has environment && resource.environment == principal.environment }`,
	` when { principal.getTag("repo") == "r" }`, // errors without the tag
	` when { principal.hasTag("repo") }`,
	` when { context.n > 3 }`, // errors when n is absent or not a Long
	` when { principal in resource }`,
	` when { resource.environment == "prod" } unless { context.n == 1 }`,
}

func genPolicySet(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := range n {
		if r.IntN(3) > 0 {
			fmt.Fprintf(&b, "@id(\"p%d\") ", i)
		}
		if r.IntN(4) == 0 {
			b.WriteString(`@reason("generated") `)
		}
		effect := "permit"
		if r.IntN(3) == 0 {
			effect = "forbid"
		}
		fmt.Fprintf(&b, "%s (%s, %s, %s)%s;\n", effect,
			genVarScope(r, "principal"), genActionScope(r), genVarScope(r, "resource"), pick(r, genConditions))
	}
	return b.String()
}

func genRequest(r *rand.Rand) Request {
	req := Request{
		Identity: &fsmpb.Identity{
			Id: pick(r, genIDs), Kind: pick(r, genKinds), Owner: pick(r, genOwners), Environment: pick(r, genEnvs),
		},
		Role:     pick(r, genRoles),
		Action:   pick(r, genActions),
		Resource: Resource{Type: pick(r, genRTypes), ID: pick(r, genRIDs)},
	}
	if r.IntN(2) == 0 {
		req.Identity.Attributes = map[string]string{"repo": "r"}
	}
	if r.IntN(4) > 0 {
		req.Resource.Attributes = map[string]any{"owner": pick(r, genOwners), "environment": pick(r, genEnvs)}
		if r.IntN(3) == 0 {
			delete(req.Resource.Attributes, "environment")
		}
	}
	ctx := map[string]any{}
	switch r.IntN(3) {
	case 0:
		ctx["flag"] = r.IntN(2) == 0
	case 1:
		ctx["flag"] = "yes" // a type error for `when { context.flag }`
	}
	switch r.IntN(3) {
	case 0:
		ctx["n"] = float64(r.IntN(6))
	case 1:
		ctx["n"] = "many"
	}
	req.Context = ctx
	return req
}

// TestIndexedEqualsWholeSet compares Decide with DecideAll on random policy
// sets and requests: same decision, determining policies (with annotations),
// errors and reason. Reproduce a failure with -equiv.seed.
func TestIndexedEqualsWholeSet(t *testing.T) {
	t.Parallel()
	seed := *equivSeed
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	var cases, allowed, forbidden, errored, skipped, total int
	for s := range *equivSets {
		text := genPolicySet(r, 1+r.IntN(60))
		ps, err := Compile(fmt.Sprintf("set%d", s), uint64(s), []byte(text))
		if err != nil {
			t.Fatalf("set %d does not compile: %v\n%s", s, err, text)
		}
		for range 25 {
			req := genRequest(r)
			want, err := ps.DecideAll(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ps.Decide(req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("seed %d set %d request %+v: indexed (+) differs from whole set (-):\n%s\npolicies:\n%s", seed, s, req, diff, text)
			}
			cases++
			switch {
			case got.Allowed:
				allowed++
			case len(got.Determining) > 0:
				forbidden++
			}
			if len(got.Errors) > 0 {
				errored++
			}
			n := countCandidates(t, ps, req)
			skipped += ps.Len() - n
			total += ps.Len()
		}
	}
	t.Logf("%d cases: %d allowed, %d denied by a forbid, %d with errors; index skipped %d of %d policy evaluations",
		cases, allowed, forbidden, errored, skipped, total)
	// The generator must exercise every outcome, and the index must skip.
	if allowed < cases/20 || forbidden < cases/20 || errored < cases/20 || skipped < total/4 {
		t.Fatalf("generator too narrow: %d cases, %d allowed, %d forbidden, %d errored, %d/%d skipped",
			cases, allowed, forbidden, errored, skipped, total)
	}
}

func countCandidates(t *testing.T, ps *PolicySet, req Request) int {
	t.Helper()
	var ents entities
	if _, err := newRequest(req, &ents, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	for range (&candidates{ps: ps, ents: &ents}).All() {
		n++
	}
	return n
}

// TestCandidatesAreExactlyScopeMatches checks the index against Cedar
// itself, policy by policy: a policy is a candidate exactly when Cedar
// finds its scope true (the policy with its conditions removed
// determines), candidates come in ascending position without duplicates,
// and a policy left out neither determines nor errors when Cedar evaluates
// it alone. This catches what decisions hide (a permit dropped while a
// forbid denies).
func TestCandidatesAreExactlyScopeMatches(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(*equivSeed, 1))
	for s := range 150 {
		text := genPolicySet(r, 1+r.IntN(40))
		ps, err := Compile("set", 1, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		scopeOnly := make([]*cedar.Policy, ps.Len())
		for i := range ps.iter.list {
			a := *(*xast.Policy)(ps.iter.list[i].policy.AST())
			a.Conditions = nil
			scopeOnly[i] = cedar.NewPolicyFromAST((*ast.Policy)(&a))
		}
		for range 20 {
			req := genRequest(r)
			var ents entities
			creq, err := newRequest(req, &ents, nil)
			if err != nil {
				t.Fatal(err)
			}
			in := make([]bool, ps.Len())
			last := -1
			for id := range (&candidates{ps: ps, ents: &ents}).All() {
				i := ps.byID[id]
				if i <= last {
					t.Fatalf("set %d: candidate %s at %d after %d", s, id, i, last)
				}
				last, in[i] = i, true
			}
			for i := range ps.iter.list {
				c := &ps.iter.list[i]
				scopeTrue := hasReason(scopeOnly[i], &ents, creq)
				if in[i] != scopeTrue {
					t.Fatalf("set %d request %+v: policy %s candidate=%v, Cedar scope=%v\n%s", s, req, c.id, in[i], scopeTrue, c.policy.MarshalCedar())
				}
				if !in[i] {
					if _, diag := cedar.Authorize(one{c.id, c.policy}, &ents, creq); len(diag.Reasons)+len(diag.Errors) > 0 {
						t.Fatalf("set %d: policy %s left out but Cedar gives %+v", s, c.id, diag)
					}
				}
			}
		}
	}
}

func hasReason(p *cedar.Policy, ents *entities, creq cedar.Request) bool {
	_, diag := cedar.Authorize(one{"x", p}, ents, creq)
	return len(diag.Reasons) == 1 && len(diag.Errors) == 0
}

// one is a policy iterator over one policy.
type one struct {
	id types.PolicyID
	p  *cedar.Policy
}

func (o one) All() iter.Seq2[types.PolicyID, *cedar.Policy] {
	return func(yield func(types.PolicyID, *cedar.Policy) bool) { yield(o.id, o.p) }
}

// TestAncestorsAgreeWithGet: the index computes ancestors without building
// the principal; they must be what Cedar reaches through Get, including for
// a resource that is the principal and one that is a principal's parent.
func TestAncestorsAgreeWithGet(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(*equivSeed, 2))
	for range 2000 {
		req := genRequest(r)
		var ents entities
		creq, err := newRequest(req, &ents, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, uid := range []types.EntityUID{creq.Principal, creq.Action, creq.Resource} {
			want := transitiveParents(&ents, uid)
			got := ents.ancestors(uid)
			if !types.NewEntityUIDSet(got...).Equal(types.NewEntityUIDSet(want...)) || len(got) != len(want) {
				t.Fatalf("request %+v: ancestors(%s) = %v, Get gives %v", req, uid, got, want)
			}
		}
	}
}

func transitiveParents(g types.EntityGetter, uid types.EntityUID) []types.EntityUID {
	seen := map[types.EntityUID]bool{uid: true}
	var out []types.EntityUID
	todo := []types.EntityUID{uid}
	for len(todo) > 0 {
		e, ok := g.Get(todo[0])
		todo = todo[1:]
		if !ok {
			continue
		}
		for p := range e.Parents.All() {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
				todo = append(todo, p)
			}
		}
	}
	return out
}
