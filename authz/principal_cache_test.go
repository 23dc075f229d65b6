package authz

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// TestPrincipalCacheAgrees: a set from an Engine (principal records cached
// per identity record, parent sets per role) decides exactly as a set from
// Compile (nothing cached), with identity records reused across requests
// and roles changing between them, as on a node.
func TestPrincipalCacheAgrees(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(*equivSeed, 2))
	e := NewEngine()
	var idents []*fsmpb.Identity
	for range 12 {
		id := genRequest(r).Identity
		idents = append(idents, id)
	}
	for s := range 60 {
		text := genPolicySet(r, 1+r.IntN(40))
		cached, err := e.Get(&fsmpb.PolicySet{Name: "p", Version: uint64(s + 1), Cedar: text})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := Compile("p", uint64(s+1), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		for range 40 {
			req := genRequest(r)
			req.Identity = pick(r, idents)
			want, err := plain.DecideAll(req)
			if err != nil {
				t.Fatal(err)
			}
			for name, decide := range map[string]func(Request) (Decision, error){"Decide": cached.Decide, "DecideAll": cached.DecideAll} {
				got, err := decide(req)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("set %d %s with the cache (+) differs (-):\n%s\n%s", s, name, diff, text)
				}
			}
		}
	}
	if n := e.principals.len(); n == 0 || n > len(idents) {
		t.Fatalf("cache holds %d identities, want 1..%d", n, len(idents))
	}
}

// TestPrincipalCacheForgetsCollectedRecords: entries go once their
// identity record is garbage.
func TestPrincipalCacheForgetsCollectedRecords(t *testing.T) {
	var c principalCache
	for i := range 100 {
		c.get(&fsmpb.Identity{Id: fmt.Sprint("id", i), Kind: "workload", Owner: "o"})
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries left after their records were collected", c.len())
		}
		runtime.GC()
		runtime.Gosched()
	}
}
