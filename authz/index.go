package authz

import (
	"cmp"
	"iter"
	"slices"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Indexed evaluation. cedar.Authorize evaluates every policy it is handed.
// Cedar evaluates a policy's scope (principal, action, resource) before its
// conditions and the scope cannot fail, so a policy whose scope does not
// match the request evaluates to false without error: it can neither
// determine the decision nor report an error. Handing Authorize only the
// policies whose scope matches therefore gives the same decision, the same
// determining policies and the same errors, in the same order (candidates
// are yielded in policy-text order). See DESIGN.md, "Indexed evaluation".

// scopeOp is the shape of one scope constraint.
type scopeOp uint8

const (
	// opUnknown is a scope node the index does not recognise: it always
	// matches (the policy is handed to Cedar, which decides).
	opUnknown scopeOp = iota
	opAll             // no constraint: "principal"
	opEq              // principal == E
	opIn              // principal in E
	opInSet           // action in [E1, E2]
	opIs              // principal is T
	opIsIn            // principal is T in E
)

// scope is one of a policy's three scope constraints.
type scope struct {
	op  scopeOp
	typ types.EntityType  // opIs, opIsIn
	uid types.EntityUID   // opEq, opIn, opIsIn
	set []types.EntityUID // opInSet, duplicates removed
}

func scopeOf(n xast.IsScopeNode) scope {
	switch s := n.(type) {
	case xast.ScopeTypeAll:
		return scope{op: opAll}
	case xast.ScopeTypeEq:
		return scope{op: opEq, uid: s.Entity}
	case xast.ScopeTypeIn:
		return scope{op: opIn, uid: s.Entity}
	case xast.ScopeTypeInSet:
		set := slices.Clone(s.Entities)
		slices.SortFunc(set, func(a, b types.EntityUID) int {
			return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.ID, b.ID))
		})
		return scope{op: opInSet, set: slices.Compact(set)}
	case xast.ScopeTypeIs:
		return scope{op: opIs, typ: s.Type}
	case xast.ScopeTypeIsIn:
		return scope{op: opIsIn, typ: s.Type, uid: s.Entity}
	}
	return scope{op: opUnknown}
}

// match reports whether the constraint holds for the entity uid whose
// ancestors (parents, transitively, not uid itself) are anc. It mirrors
// Cedar: == is equality, in is reflexive-transitive membership, is compares
// the type. It must never be false where Cedar's scope is true.
func (s *scope) match(uid types.EntityUID, anc []types.EntityUID) bool {
	switch s.op {
	case opAll, opUnknown:
		return true
	case opEq:
		return uid == s.uid
	case opIn:
		return uid == s.uid || slices.Contains(anc, s.uid)
	case opInSet:
		for _, e := range s.set {
			if uid == e || slices.Contains(anc, e) {
				return true
			}
		}
		return false
	case opIs:
		return uid.Type == s.typ
	case opIsIn:
		return uid.Type == s.typ && (uid == s.uid || slices.Contains(anc, s.uid))
	}
	return true
}

// policyScope is the scope of one policy.
type policyScope struct{ principal, action, resource scope }

func policyScopeOf(p *cedar.Policy) policyScope {
	a := (*xast.Policy)(p.AST())
	return policyScope{
		principal: scopeOf(a.Principal),
		action:    scopeOf(a.Action),
		resource:  scopeOf(a.Resource),
	}
}

// index places every policy in exactly one bucket, chosen from its scope by
// the most selective constraint it has (in this order):
//
//	resource == E            resourceEq[E]
//	principal == E           principalEq[E]
//	principal (is T) in E    principalIn[E]
//	resource (is T) in E     resourceIn[E]
//	action == E, action in E, action in [E1..]
//	                         action[E] (one bucket per distinct Ei)
//	resource is T            resourceType[T]
//	principal is T           principalType[T]
//	anything else            always
//
// A bucket is the ascending list of policy positions. Whatever bucket a
// policy is in, its key is among the keys a request whose scope it matches
// looks up (see lookups), so the buckets a request looks up hold every
// policy whose scope matches it; the scope check in candidates.All then
// drops the others.
type index struct {
	principalEq   map[types.EntityUID][]int32
	principalIn   map[types.EntityUID][]int32
	resourceEq    map[types.EntityUID][]int32
	resourceIn    map[types.EntityUID][]int32
	action        map[types.EntityUID][]int32
	principalType map[types.EntityType][]int32
	resourceType  map[types.EntityType][]int32
	always        []int32
}

func buildIndex(list []compiled) index {
	ix := index{
		principalEq:   map[types.EntityUID][]int32{},
		principalIn:   map[types.EntityUID][]int32{},
		resourceEq:    map[types.EntityUID][]int32{},
		resourceIn:    map[types.EntityUID][]int32{},
		action:        map[types.EntityUID][]int32{},
		principalType: map[types.EntityType][]int32{},
		resourceType:  map[types.EntityType][]int32{},
	}
	for i := range list {
		pos := int32(i)
		s := &list[i].scope
		switch {
		case s.resource.op == opEq:
			ix.resourceEq[s.resource.uid] = append(ix.resourceEq[s.resource.uid], pos)
		case s.principal.op == opEq:
			ix.principalEq[s.principal.uid] = append(ix.principalEq[s.principal.uid], pos)
		case s.principal.op == opIn || s.principal.op == opIsIn:
			ix.principalIn[s.principal.uid] = append(ix.principalIn[s.principal.uid], pos)
		case s.resource.op == opIn || s.resource.op == opIsIn:
			ix.resourceIn[s.resource.uid] = append(ix.resourceIn[s.resource.uid], pos)
		case s.action.op == opEq || s.action.op == opIn:
			ix.action[s.action.uid] = append(ix.action[s.action.uid], pos)
		case s.action.op == opInSet && len(s.action.set) > 0:
			for _, e := range s.action.set { // distinct: a position appears once per bucket
				ix.action[e] = append(ix.action[e], pos)
			}
		case s.resource.op == opIs:
			ix.resourceType[s.resource.typ] = append(ix.resourceType[s.resource.typ], pos)
		case s.principal.op == opIs:
			ix.principalType[s.principal.typ] = append(ix.principalType[s.principal.typ], pos)
		default:
			ix.always = append(ix.always, pos)
		}
	}
	return ix
}

// maxLookups bounds the buckets one request looks up with the entity model
// of entity.go (a principal with at most 3 parents; action and resource
// without parents, except a resource that is the principal): 4+4+1+1+1+1.
// More would only cost an allocation.
const maxLookups = 16

// candidates is the cedar.PolicyIterator of one indexed decision: the
// policies of the buckets the request looks up, in policy order, without
// duplicates, whose scope matches the request.
type candidates struct {
	ps   *PolicySet
	ents *entities
}

// lookups appends to dst the buckets of ix that a request can match:
//
//	principalEq[P], principalIn[X] for X in P and its ancestors,
//	resourceEq[R],  resourceIn[X]  for X in R and its ancestors,
//	action[X] for X in A and its ancestors,
//	principalType[type of P], resourceType[type of R], always.
//
// The ancestors are what the entity getter gives (entities.ancestors for a
// Writ decision, the transitive parents in the entity map for plain Cedar).
func lookups(dst [][]int32, ix *index, q *scopeRequest) [][]int32 {
	add := func(l []int32) {
		if len(l) > 0 {
			dst = append(dst, l)
		}
	}
	add(ix.principalEq[q.p])
	add(ix.principalIn[q.p])
	for _, x := range q.pAnc {
		add(ix.principalIn[x])
	}
	add(ix.resourceEq[q.r])
	add(ix.resourceIn[q.r])
	for _, x := range q.rAnc {
		add(ix.resourceIn[x])
	}
	add(ix.action[q.a])
	for _, x := range q.aAnc {
		add(ix.action[x])
	}
	add(ix.principalType[q.p.Type])
	add(ix.resourceType[q.r.Type])
	add(ix.always)
	return dst
}

// scopeRequest is what the index needs of a request: the three entities
// and their ancestors.
type scopeRequest struct {
	p, a, r          types.EntityUID
	pAnc, aAnc, rAnc []types.EntityUID
}

func (c *candidates) All() iter.Seq2[types.PolicyID, *cedar.Policy] {
	return func(yield func(types.PolicyID, *cedar.Policy) bool) {
		c.each(yield)
	}
}

// each yields the candidates in ascending position.
func (c *candidates) each(yield func(types.PolicyID, *cedar.Policy) bool) {
	e := c.ents
	q := scopeRequest{p: e.principal, a: e.action, r: e.resource.UID}
	q.pAnc, q.aAnc, q.rAnc = e.ancestors(q.p), e.ancestors(q.a), e.ancestors(q.r)
	c.ps.eachCandidate(&q, yield)
}

// eachCandidate yields, in ascending position, the policies of ps whose
// scope matches q.
func (ps *PolicySet) eachCandidate(q *scopeRequest, yield func(types.PolicyID, *cedar.Policy) bool) {
	var buf [maxLookups][]int32
	lists := lookups(buf[:0], &ps.index, q)
	list := ps.iter.list
	last := int32(-1)
	for {
		// k-way merge: the smallest head of the (few) lists.
		best := -1
		var pos int32
		for i, l := range lists {
			if len(l) > 0 && (best < 0 || l[0] < pos) {
				best, pos = i, l[0]
			}
		}
		if best < 0 {
			return
		}
		lists[best] = lists[best][1:]
		if pos == last {
			continue // in two looked-up buckets (action in [A, G] with A in G)
		}
		last = pos
		cp := &list[pos]
		if !cp.scope.principal.match(q.p, q.pAnc) || !cp.scope.action.match(q.a, q.aAnc) || !cp.scope.resource.match(q.r, q.rAnc) {
			continue
		}
		if !yield(cp.id, cp.policy) {
			return
		}
	}
}
