package authz

import (
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// principalCache keeps, per identity record, the Cedar records its
// principal entity carries (attributes and tags), so that a decision does
// not rebuild and rehash them: about a third of a decision's CPU otherwise.
//
// It is keyed by the record's pointer, weakly: fsm records are immutable
// and an update stores a new record, so a pointer always denotes one
// content, and an entry goes away once its record is collected (no bound
// needed beyond the state's own). Safe for concurrent use.
type principalCache struct {
	m sync.Map // weak.Pointer[fsmpb.Identity] → *principalRecords
}

type principalRecords struct {
	attrs, tags types.Record
	// parents is the parent set for the role last asked for (an identity
	// nearly always logs in through one role).
	parents atomic.Pointer[roleParents]
}

type roleParents struct {
	role string
	set  types.EntityUIDSet
}

// parentSet returns the principal's parent set for role (whose parents are
// uids), built when the role is not the one last cached.
func (r *principalRecords) parentSet(role string, uids []types.EntityUID) types.EntityUIDSet {
	if rp := r.parents.Load(); rp != nil && rp.role == role {
		return rp.set
	}
	set := types.NewEntityUIDSet(uids...)
	r.parents.Store(&roleParents{role: role, set: set})
	return set
}

func buildPrincipalRecords(ident *fsmpb.Identity) *principalRecords {
	r := &principalRecords{attrs: types.NewRecord(types.RecordMap{
		attrOwner:       types.String(ident.GetOwner()),
		attrEnvironment: types.String(ident.GetEnvironment()),
		attrKind:        types.String(ident.GetKind()),
	})}
	if attrs := ident.GetAttributes(); len(attrs) > 0 {
		m := make(types.RecordMap, len(attrs))
		for k, v := range attrs {
			m[types.String(k)] = types.String(v)
		}
		r.tags = types.NewRecord(m)
	}
	return r
}

func (c *principalCache) get(ident *fsmpb.Identity) *principalRecords {
	if c == nil {
		return buildPrincipalRecords(ident)
	}
	wp := weak.Make(ident)
	if v, ok := c.m.Load(wp); ok {
		return v.(*principalRecords)
	}
	r := buildPrincipalRecords(ident)
	if v, loaded := c.m.LoadOrStore(wp, r); loaded {
		return v.(*principalRecords)
	}
	runtime.AddCleanup(ident, func(wp weak.Pointer[fsmpb.Identity]) { c.m.Delete(wp) }, wp)
	return r
}

// len counts the cached identities (tests).
func (c *principalCache) len() int {
	n := 0
	c.m.Range(func(any, any) bool { n++; return true })
	return n
}
