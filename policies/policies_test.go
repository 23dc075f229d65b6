package policies_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	cedar "github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/authz/authztest"
	"github.com/writ-dev/writ/policies"
)

func sets(t *testing.T) []policies.Set {
	t.Helper()
	s, err := policies.Sets()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSetsSortedAndNamedAfterEnvironments(t *testing.T) {
	t.Parallel()
	var names []string
	for _, s := range sets(t) {
		names = append(names, s.Name)
	}
	if want := []string{"dev", "prod", "staging"}; !slices.Equal(names, want) {
		t.Fatalf("sets = %q, want %q", names, want)
	}
}

// TestSetsCompile checks every example set compiles and every policy
// carries @id (prefixed with the set's name) and @reason.
func TestSetsCompile(t *testing.T) {
	t.Parallel()
	for _, s := range sets(t) {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			ps, err := authz.Compile(s.Name, 1, s.Cedar)
			if err != nil {
				t.Fatal(err)
			}
			if ps.Len() == 0 {
				t.Fatal("no policies")
			}
			for i, p := range ps.Policies() {
				if _, ok := p.Annotations["id"]; !ok {
					t.Errorf("policy %d has no @id", i)
				}
				if !strings.HasPrefix(p.ID, s.Name+"-") {
					t.Errorf("policy %s: @id should start with %q", p.ID, s.Name+"-")
				}
				if p.Annotations["reason"] == "" {
					t.Errorf("policy %s has no @reason", p.ID)
				}
			}
		})
	}
}

func resolvedSchema(t *testing.T) *validate.Validator {
	t.Helper()
	var s schema.Schema
	s.SetFilename("writ.cedarschema")
	if err := s.UnmarshalCedar(policies.Schema); err != nil {
		t.Fatalf("schema does not parse: %v", err)
	}
	r, err := s.Resolve()
	if err != nil {
		t.Fatalf("schema does not resolve: %v", err)
	}
	return validate.New(r)
}

// TestSetsValidateAgainstSchema keeps the examples consistent with the
// schema. Writ does not validate at activation yet; the validator lives in
// cedar-go's x/exp (pinned by go.mod) and is used by this test only.
func TestSetsValidateAgainstSchema(t *testing.T) {
	t.Parallel()
	v := resolvedSchema(t)
	for _, s := range sets(t) {
		list, err := cedar.NewPolicyListFromBytes(s.Name, s.Cedar)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range list {
			id := fmt.Sprintf("%s#%d", s.Name, i)
			if v, ok := p.Annotations()["id"]; ok {
				id = string(v)
			}
			if err := v.Policy(id, (*xast.Policy)(p.AST())); err != nil {
				t.Errorf("%s: %v", id, err)
			}
		}
	}
}

func TestDevFixtures(t *testing.T) {
	t.Parallel()
	fx, err := policies.DevFixtures()
	if err != nil {
		t.Fatal(err)
	}
	setNames := map[string]bool{}
	for _, s := range sets(t) {
		setNames[s.Name] = true
	}
	ids := map[string]policies.Identity{}
	for _, id := range fx.Identities {
		if _, err := authz.PrincipalType(id.Kind); err != nil {
			t.Errorf("identity %s: %v", id.ID, err)
		}
		if !setNames[id.Environment] {
			t.Errorf("identity %s: no example set governs environment %q", id.ID, id.Environment)
		}
		ids[id.ID] = id
	}
	for _, want := range []string{"ci/deploy-api", "backup/nightly", "agent/support-bot", "svc/billing"} {
		if _, ok := ids[want]; !ok {
			t.Errorf("identity %s is missing", want)
		}
	}
	roleOf := map[string]string{}
	for _, r := range fx.Roles {
		id, ok := ids[r.Identity]
		if !ok {
			t.Errorf("role %s: identity %s does not exist", r.Name, r.Identity)
			continue
		}
		if id.Environment != r.Environment {
			t.Errorf("role %s is in %s, its identity in %s", r.Name, r.Environment, id.Environment)
		}
		if !slices.Equal(r.AuthMethods, []string{"approle"}) {
			t.Errorf("role %s: auth methods %q, want [approle]", r.Name, r.AuthMethods)
		}
		if r.DefaultTTL <= 0 || r.DefaultTTL > r.MaxTTL {
			t.Errorf("role %s: default ttl %s, max %s", r.Name, r.DefaultTTL, r.MaxTTL)
		}
		if r.MaxLiveLeases == 0 {
			t.Errorf("role %s: max_live_leases is 0", r.Name)
		}
		if prev, dup := roleOf[r.Identity]; dup {
			t.Errorf("identity %s has two roles: %s and %s", r.Identity, prev, r.Name)
		}
		roleOf[r.Identity] = r.Name
	}
	for id := range ids {
		if _, ok := roleOf[id]; !ok {
			t.Errorf("identity %s has no role", id)
		}
	}
}

func TestDevFixturesAreFresh(t *testing.T) {
	t.Parallel()
	a, err := policies.DevFixtures()
	if err != nil {
		t.Fatal(err)
	}
	a.Identities[0].ID = "changed"
	b, err := policies.DevFixtures()
	if err != nil {
		t.Fatal(err)
	}
	if b.Identities[0].ID == "changed" {
		t.Fatal("DevFixtures returned shared state")
	}
}

// TestExampleCases runs testdata/*.yaml against the example sets and checks
// that they exercise every set: allows and denies, and every policy as a
// determining policy at least once.
func TestExampleCases(t *testing.T) {
	t.Parallel()
	all := sets(t)
	byName := make(map[string][]byte, len(all))
	for _, s := range all {
		byName[s.Name] = s.Cedar
	}
	report := authztest.Run(t, authztest.Load(t, "testdata/*.yaml"), byName, authztest.Variants())
	if t.Failed() {
		return
	}
	for _, s := range all {
		r := report.BySet[s.Name]
		if r == nil || r.Allows == 0 || r.Denies == 0 {
			t.Errorf("set %s: cases must include allows and denies (report %+v)", s.Name, r)
			continue
		}
		ps, err := authz.Compile(s.Name, 1, s.Cedar)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps.Policies() {
			if r.Determining[p.ID] == 0 {
				t.Errorf("set %s: no case has %s as a determining policy", s.Name, p.ID)
			}
		}
	}
}
