package authz_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, text string
		want       []string
	}{
		{"syntax error names line and column", "@id(\"a\")\npermit (principal, action, resource)\nwhen { context.x == };\n",
			[]string{"prod v7: ", "at prod:3:22"}},
		{"unknown effect", "allow (principal, action, resource);", []string{"at prod:1:7", "unexpected effect"}},
		{"missing semicolon on line 4", "permit (principal, action, resource);\n\n\npermit (principal, action, resource)", []string{"prod:4:"}},
		{"duplicate @id", "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);",
			[]string{`prod:2:1: policy id "a" is already used by the policy at prod:1:1`}},
		{"@id colliding with a default name", "permit (principal, action, resource);\n@id(\"policy0\") permit (principal, action, resource);",
			[]string{`policy id "policy0" is already used`}},
		{"empty @id", "@id(\"\") permit (principal, action, resource);", []string{"prod:1:1: empty @id"}},
		{"too large", strings.Repeat(" ", authz.MaxPolicySetBytes+1), []string{"at most"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := authz.Compile("prod", 7, []byte(c.text))
			if !errors.Is(err, authz.ErrCompile) {
				t.Fatalf("err = %v, want ErrCompile", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestCompileNamesPolicies(t *testing.T) {
	t.Parallel()
	ps, err := authz.Compile("dev", 3, []byte(`
permit (principal, action, resource);
@id("b") @reason("why") permit (principal, action, resource);
forbid (principal, action, resource) when { false };
`))
	if err != nil {
		t.Fatal(err)
	}
	if ps.Name() != "dev" || ps.Version() != 3 || ps.Len() != 3 {
		t.Fatalf("name %q version %d len %d", ps.Name(), ps.Version(), ps.Len())
	}
	want := []authz.PolicyRef{
		{ID: "policy0", Annotations: map[string]string{}},
		{ID: "b", Annotations: map[string]string{"id": "b", "reason": "why"}},
		{ID: "policy2", Annotations: map[string]string{}},
	}
	if diff := cmp.Diff(want, ps.Policies()); diff != "" {
		t.Fatalf("Policies() (-want +got):\n%s", diff)
	}
	// Policies returns a fresh slice.
	ps.Policies()[0].ID = "changed"
	if ps.Policies()[0].ID != "policy0" {
		t.Fatal("Policies() shares its slice")
	}
}

func TestDecideFillsDecision(t *testing.T) {
	t.Parallel()
	ps, err := authz.Compile("prod", 9, []byte(`@id("p") @reason("r") permit (principal, action, resource);`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ps.Decide(authz.Request{
		Identity: &fsmpb.Identity{Id: "svc/a", Kind: "workload"},
		Action:   "read", Resource: authz.Resource{Type: "Secret", ID: "s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := authz.Decision{
		Allowed:     true,
		Determining: []authz.PolicyRef{{ID: "p", Annotations: map[string]string{"id": "p", "reason": "r"}}},
		Outcome:     authz.OutcomeAllowed,
		Reason:      "allowed by p",
		PolicySet:   "prod",
		Version:     9,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Decide (-want +got):\n%s", diff)
	}
}

func TestDecideInvalidRequest(t *testing.T) {
	t.Parallel()
	ps, err := authz.Compile("prod", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", authz.MaxIDBytes+1)
	ok := func() authz.Request {
		return authz.Request{
			Identity: &fsmpb.Identity{Id: "svc/a", Kind: "workload"},
			Action:   "read", Resource: authz.Resource{Type: "Secret", ID: "s"},
		}
	}
	cases := map[string]func(*authz.Request){
		"nil identity":       func(r *authz.Request) { r.Identity = nil },
		"long identity id":   func(r *authz.Request) { r.Identity.Id = long },
		"long role":          func(r *authz.Request) { r.Role = long },
		"long action":        func(r *authz.Request) { r.Action = strings.Repeat("a", authz.MaxTypeBytes+1) },
		"long resource id":   func(r *authz.Request) { r.Resource.ID = long },
		"long resource type": func(r *authz.Request) { r.Resource.Type = strings.Repeat("A", authz.MaxTypeBytes+1) },
		"trailing ::":        func(r *authz.Request) { r.Resource.Type = "Acme::" },
		"namespaced Action":  func(r *authz.Request) { r.Resource.Type = "Acme::Action" },
		"unknown kind":       func(r *authz.Request) { r.Identity.Kind = "" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			req := ok()
			mutate(&req)
			if _, err := ps.Decide(req); !errors.Is(err, authz.ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
		})
	}
	if _, err := ps.Decide(ok()); err != nil {
		t.Fatalf("valid request: %v", err)
	}
}

func TestPrincipalType(t *testing.T) {
	t.Parallel()
	for kind, want := range map[string]string{
		"workload": "Workload", "ci_job": "CiJob", "agent": "Agent", "service_account": "ServiceAccount",
	} {
		got, err := authz.PrincipalType(kind)
		if err != nil || got != want {
			t.Errorf("PrincipalType(%q) = %q, %v; want %q", kind, got, err, want)
		}
	}
	for _, kind := range []string{"", "Workload", "human"} {
		if _, err := authz.PrincipalType(kind); !errors.Is(err, authz.ErrUnknownKind) {
			t.Errorf("PrincipalType(%q) err = %v, want ErrUnknownKind", kind, err)
		}
	}
}

// FuzzCompile feeds arbitrary text to Compile: it must compile or return an
// ErrCompile error, never panic; a compiled set must decide, indexed exactly
// as over the whole set.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		``,
		`permit (principal, action, resource);`,
		`@id("a") @reason("b") forbid (principal is Workload, action == Action::"x", resource) when { context.ttl > 3 } unless { principal.hasTag("x") };`,
		`@id("a") permit (principal, action, resource); @id("a") permit (principal, action, resource);`,
		`@id("") permit (principal, action, resource);`,
		`permit (principal in Team::"t", action in [Action::"a"], resource is Secret in Secret::"s") when { [1,2].contains(context.n) && resource.path like "a/*" };`,
		`@id("x") forbid (principal is Workload in Environment::"dev", action in [Action::"a", Action::"a"], resource == Secret::"s") when { context.missing };
permit (principal == Workload::"svc/a", action, resource in Role::"r"); permit (principal, action in Action::"a", resource is Secret) when { principal.getTag("x") == "y" };`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ps, err := authz.Compile("fuzz", 1, []byte(text))
		if err != nil {
			if !errors.Is(err, authz.ErrCompile) {
				t.Fatalf("error %v does not wrap ErrCompile", err)
			}
			return
		}
		req := authz.Request{
			Identity: &fsmpb.Identity{Id: "svc/a", Kind: "workload", Owner: "t", Environment: "dev", Attributes: map[string]string{"x": "y"}},
			Role:     "r", Action: "a",
			Resource: authz.Resource{Type: "Secret", ID: "s", Attributes: map[string]any{"path": "a/b"}},
			Context:  map[string]any{"n": float64(1), "ttl": float64(5)},
		}
		got, err := ps.Decide(req)
		if err != nil {
			t.Fatalf("decide: %v", err)
		}
		want, err := ps.DecideAll(req)
		if err != nil {
			t.Fatalf("decide all: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("indexed (+) differs from whole set (-):\n%s", diff)
		}
	})
}
