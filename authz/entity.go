package authz

import (
	"fmt"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Entity type names Writ hands to Cedar. They must match
// policies/writ.cedarschema.
const (
	typeAction      = types.EntityType("Action")
	typeRole        = types.EntityType("Role")
	typeTeam        = types.EntityType("Team")
	typeEnvironment = types.EntityType("Environment")
)

// Principal attribute names. Identity attributes are tags, not attributes,
// so they can never shadow these.
const (
	attrOwner       = types.String("owner")
	attrEnvironment = types.String("environment")
	attrKind        = types.String("kind")
)

// PrincipalType returns the Cedar entity type of an identity kind:
// workload → Workload, ci_job → CiJob, agent → Agent,
// service_account → ServiceAccount. Any other kind wraps ErrUnknownKind.
func PrincipalType(kind string) (string, error) {
	t, err := principalType(kind)
	return string(t), err
}

func principalType(kind string) (types.EntityType, error) {
	switch kind {
	case "workload":
		return "Workload", nil
	case "ci_job":
		return "CiJob", nil
	case "agent":
		return "Agent", nil
	case "service_account":
		return "ServiceAccount", nil
	}
	return "", fmt.Errorf("%w %q (want workload, ci_job, agent or service_account)", ErrUnknownKind, kind)
}

// entities is the cedar.EntityGetter for one request. It knows exactly the
// entities a Writ decision can reach: the principal, its parents (role, team,
// environment, which have no attributes or parents of their own), the action
// and the resource. Anything else does not exist.
//
// The principal entity is built on first use and kept, so a policy set that
// never looks at the principal's attributes or ancestors does not pay for
// them. An entities value belongs to one goroutine (one Authorize call).
type entities struct {
	ident     *fsmpb.Identity
	role      string
	principal types.EntityUID
	parents   [3]types.EntityUID
	nParents  int
	action    types.EntityUID
	resource  types.Entity

	built bool
	full  types.Entity    // the principal, once built
	cache *principalCache // nil: build the principal's records every time
}

var _ types.EntityGetter = (*entities)(nil)

func (e *entities) Get(uid types.EntityUID) (types.Entity, bool) {
	switch uid {
	case e.principal:
		return e.principalEntity(), true
	case e.resource.UID:
		return e.resource, true
	case e.action:
		return types.Entity{UID: uid}, true
	}
	for _, p := range e.parents[:e.nParents] {
		if uid == p {
			return types.Entity{UID: uid}, true
		}
	}
	return types.Entity{}, false
}

func (e *entities) principalEntity() types.Entity {
	if e.built {
		return e.full
	}
	e.built = true
	recs := e.cache.get(e.ident)
	var parents types.EntityUIDSet
	if e.cache != nil {
		parents = recs.parentSet(e.role, e.parents[:e.nParents])
	} else {
		parents = types.NewEntityUIDSet(e.parents[:e.nParents]...)
	}
	e.full = types.Entity{
		UID:        e.principal,
		Parents:    parents,
		Attributes: recs.attrs,
		Tags:       recs.tags,
	}
	return e.full
}

// ancestors returns the ancestors (parents, transitively) of uid's entity as
// Get gives them, without building the principal: the principal's parents
// (which have no parents), and nothing for anything else. It must agree with
// Get; the index relies on it (TestAncestorsAgreeWithGet).
func (e *entities) ancestors(uid types.EntityUID) []types.EntityUID {
	if uid == e.principal { // checked first, like Get: a resource that is the principal has its parents
		return e.parents[:e.nParents]
	}
	return nil
}
