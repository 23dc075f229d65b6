package authz_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

func set(name string, version uint64, text string) *fsmpb.PolicySet {
	return &fsmpb.PolicySet{Name: name, Version: version, Cedar: text}
}

func mustGet(t *testing.T, e *authz.Engine, ps *fsmpb.PolicySet) *authz.PolicySet {
	t.Helper()
	c, err := e.Get(ps)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != ps.GetName() || c.Version() != ps.GetVersion() {
		t.Fatalf("got %s v%d, want %s v%d", c.Name(), c.Version(), ps.GetName(), ps.GetVersion())
	}
	return c
}

const allow = `@id("allow") permit (principal, action, resource);`
const deny = `@id("deny") forbid (principal, action, resource);`

func TestEngineHitReturnsSamePointer(t *testing.T) {
	t.Parallel()
	e := authz.NewEngine()
	a := mustGet(t, e, set("prod", 1, allow))
	if b := mustGet(t, e, set("prod", 1, allow)); a != b {
		t.Fatal("second Get compiled again")
	}
	// Names are independent.
	if d := mustGet(t, e, set("dev", 1, allow)); d == a {
		t.Fatal("dev and prod share a compiled set")
	}
	if b := mustGet(t, e, set("prod", 1, allow)); a != b {
		t.Fatal("adding dev evicted prod")
	}
}

func TestEngineNewVersionReplacesOld(t *testing.T) {
	t.Parallel()
	e := authz.NewEngine()
	v1 := mustGet(t, e, set("prod", 1, allow))
	v2 := mustGet(t, e, set("prod", 2, deny))
	if v2 == v1 || v2.Policies()[0].ID != "deny" {
		t.Fatal("version 2 was not compiled")
	}
	if again := mustGet(t, e, set("prod", 2, deny)); again != v2 {
		t.Fatal("version 2 is not cached")
	}
	// A lagging reader asking for version 1 gets it compiled, but the cache
	// keeps version 2.
	old := mustGet(t, e, set("prod", 1, allow))
	if old == v1 || old.Policies()[0].ID != "allow" {
		t.Fatal("version 1 was served from a stale cache entry")
	}
	if again := mustGet(t, e, set("prod", 2, deny)); again != v2 {
		t.Fatal("asking for version 1 evicted version 2")
	}
}

func TestEngineSameVersionDifferentTextRecompiles(t *testing.T) {
	t.Parallel()
	e := authz.NewEngine()
	a := mustGet(t, e, set("prod", 0, allow))
	b := mustGet(t, e, set("prod", 0, allow+"\npermit (principal, action, resource);"))
	if a == b || b.Len() != 2 {
		t.Fatal("a different text under the same version was served from cache")
	}
}

func TestEngineCachesCompileErrors(t *testing.T) {
	t.Parallel()
	e := authz.NewEngine()
	bad := set("prod", 4, "permit (")
	_, err1 := e.Get(bad)
	_, err2 := e.Get(bad)
	if !errors.Is(err1, authz.ErrCompile) || err1 != err2 {
		t.Fatalf("errors %v and %v: want the same cached ErrCompile", err1, err2)
	}
	if _, err := e.Get(nil); !errors.Is(err, authz.ErrCompile) {
		t.Fatalf("Get(nil) = %v", err)
	}
	// A good next version replaces the broken one.
	mustGet(t, e, set("prod", 5, allow))
}

func TestEngineForget(t *testing.T) {
	t.Parallel()
	e := authz.NewEngine()
	a := mustGet(t, e, set("prod", 1, allow))
	d := mustGet(t, e, set("dev", 1, allow))
	e.Forget("prod")
	e.Forget("missing")
	if b := mustGet(t, e, set("prod", 1, allow)); b == a {
		t.Fatal("Forget kept prod")
	}
	if b := mustGet(t, e, set("dev", 1, allow)); b != d {
		t.Fatal("Forget(prod) dropped dev")
	}
}

// TestEngineConcurrentGet races readers across a version change: every
// reader of a version sees one compiled set, and nobody sees a wrong one.
func TestEngineConcurrentGet(t *testing.T) {
	t.Parallel()
	e := authz.NewEngine()
	const readers = 16
	for version := uint64(1); version <= 5; version++ {
		ps := set("prod", version, allow)
		got := make([]*authz.PolicySet, readers)
		var wg sync.WaitGroup
		for i := range readers {
			wg.Go(func() {
				c, err := e.Get(ps)
				if err != nil {
					t.Error(err)
					return
				}
				got[i] = c
			})
		}
		// Readers of other names run at the same time.
		wg.Go(func() { _, _ = e.Get(set("dev", version, allow)) })
		wg.Go(func() { e.Forget("staging") })
		wg.Wait()
		for i := range got {
			if got[i] != got[0] || got[i].Version() != version {
				t.Fatalf("version %d: reader %d got %p v%d, reader 0 got %p", version, i, got[i], got[i].Version(), got[0])
			}
		}
	}
}

func TestEngineDecides(t *testing.T) {
	t.Parallel()
	e := authz.NewEngine()
	c := mustGet(t, e, set("prod", 3, allow))
	d, err := c.Decide(authz.Request{
		Identity: &fsmpb.Identity{Id: "svc/a", Kind: "workload"},
		Action:   "read", Resource: authz.Resource{Type: "Secret", ID: "s"},
	})
	if err != nil || !d.Allowed || d.PolicySet != "prod" || d.Version != 3 {
		t.Fatalf("decision %+v, %v", d, err)
	}
}
