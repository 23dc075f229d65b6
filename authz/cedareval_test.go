package authz

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/google/go-cmp/cmp"
)

// genEntityMap builds a random entity graph over the generator's pools:
// multi-level parents (teams in teams, action groups, resources in
// resources), cycles, entities missing from the map, attributes and tags.
func genEntityMap(r *rand.Rand) (types.EntityMap, []types.EntityUID) {
	var pool []types.EntityUID
	for _, t := range genPTypes {
		for _, id := range genIDs {
			pool = append(pool, types.NewEntityUID(types.EntityType(t), types.String(id)))
		}
	}
	for _, t := range genRTypes {
		for _, id := range genRIDs {
			pool = append(pool, types.NewEntityUID(types.EntityType(t), types.String(id)))
		}
	}
	for _, o := range genOwners[:2] {
		pool = append(pool, types.NewEntityUID("Team", types.String(o)))
	}
	for _, e := range genEnvs[:2] {
		pool = append(pool, types.NewEntityUID("Environment", types.String(e)))
	}
	for _, a := range append(genActions, "nothing") {
		pool = append(pool, types.NewEntityUID("Action", types.String(a)))
	}
	em := types.EntityMap{}
	for _, uid := range pool {
		if r.IntN(6) == 0 {
			continue // not in the map: no attributes, no parents
		}
		var parents []types.EntityUID
		for range r.IntN(3) {
			parents = append(parents, pick(r, pool)) // may be itself, or form a cycle
		}
		attrs := types.RecordMap{}
		if r.IntN(3) > 0 {
			attrs["owner"] = types.String(pick(r, genOwners))
		}
		if r.IntN(2) > 0 {
			attrs["environment"] = types.String(pick(r, genEnvs))
		}
		var tags types.Record
		if r.IntN(2) == 0 {
			tags = types.NewRecord(types.RecordMap{"repo": types.String("r")})
		}
		em[uid] = types.Entity{UID: uid, Parents: types.NewEntityUIDSet(parents...), Attributes: types.NewRecord(attrs), Tags: tags}
	}
	return em, pool
}

// TestPlainIndexedEqualsWholeSet is TestIndexedEqualsWholeSet for the plain
// Cedar path, whose entity graphs are arbitrary (the Writ path's are one
// level deep): the candidate iterator must find every policy whose scope
// matches through any chain of parents.
func TestPlainIndexedEqualsWholeSet(t *testing.T) {
	t.Parallel()
	seed := *equivSeed
	r := rand.New(rand.NewPCG(seed, 1))
	var cases, allowed, forbidden, errored, viaAncestors int
	for s := range *equivSets / 4 {
		text := genPolicySet(r, 1+r.IntN(60))
		ps, err := CompileCedar(fmt.Sprintf("set%d", s), []byte(text))
		if err != nil {
			t.Fatalf("set %d: %v", s, err)
		}
		em, pool := genEntityMap(r)
		for range 25 {
			req := CedarRequest{Principal: pick(r, pool), Action: pick(r, pool), Resource: pick(r, pool)}
			if r.IntN(4) > 0 {
				req.Action = types.NewEntityUID("Action", types.String(pick(r, genActions)))
			}
			ctx := types.RecordMap{}
			if r.IntN(2) == 0 {
				ctx["flag"] = types.Boolean(r.IntN(2) == 0)
			}
			if r.IntN(2) == 0 {
				ctx["n"] = types.Long(r.IntN(6))
			}
			req.Context = types.NewRecord(ctx)
			want := ps.EvaluateCedar(em, req, true)
			got := ps.EvaluateCedar(em, req, false)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("seed %d set %d request %+v: indexed (+) differs from whole set (-):\n%s\npolicies:\n%s", seed, s, req, diff, text)
			}
			cases++
			switch got.Outcome {
			case OutcomeAllowed:
				allowed++
			case OutcomeForbidden:
				forbidden++
			}
			if len(got.Errors) > 0 {
				errored++
			}
			if len(mapAncestors(em, req.Principal)) > 1 || len(mapAncestors(em, req.Resource)) > 1 {
				viaAncestors++
			}
		}
	}
	t.Logf("%d cases: %d allowed, %d forbidden, %d with errors, %d with multi-level ancestors", cases, allowed, forbidden, errored, viaAncestors)
	if allowed < cases/20 || forbidden < cases/20 || errored < cases/20 || viaAncestors < cases/4 {
		t.Fatalf("generator too narrow: %d cases, %d allowed, %d forbidden, %d errored, %d deep", cases, allowed, forbidden, errored, viaAncestors)
	}
}
