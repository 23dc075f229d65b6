package policies

import (
	"errors"
	"strings"
	"testing"
)

func TestParseFixturesRejects(t *testing.T) {
	t.Parallel()
	const id = "identities: [{id: a, kind: workload, owner: o, environment: prod}]\n"
	const role = "roles: [{name: r, environment: prod, auth_methods: [approle], identity: a, default_ttl: 15m, max_ttl: 1h}]\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown field", "identities: [{id: a, kind: workload, owner: o, environment: prod, colour: red}]\n", "colour"},
		{"missing id", "identities: [{kind: workload, owner: o, environment: prod}]\n", "has no id"},
		{"duplicate id", "identities: [{id: a, kind: workload, owner: o, environment: prod}, {id: a, kind: agent, owner: o, environment: dev}]\n", "defined twice"},
		{"bad kind", "identities: [{id: a, kind: human, owner: o, environment: prod}]\n", `kind "human"`},
		{"no owner", "identities: [{id: a, kind: workload, environment: prod}]\n", "no owner"},
		{"no environment", "identities: [{id: a, kind: workload, owner: o}]\n", "no environment"},
		{"role without identity", id + strings.Replace(role, "identity: a", "identity: b", 1), `identity "b" is not defined`},
		{"environment mismatch", id + strings.Replace(role, "environment: prod", "environment: dev", 1), `is in environment "dev"`},
		{"duplicate role", id + "roles: [{name: r, environment: prod, auth_methods: [approle], identity: a, default_ttl: 1m, max_ttl: 1h}, {name: r, environment: prod, auth_methods: [approle], identity: a, default_ttl: 1m, max_ttl: 1h}]\n", "defined twice"},
		{"bad ttl", id + strings.Replace(role, "15m", "15 minutes", 1), "default_ttl"},
		{"default above max", id + strings.Replace(role, "15m", "2h", 1), "≤ max_ttl"},
		{"no auth methods", id + strings.Replace(role, "auth_methods: [approle], ", "", 1), "no auth_methods"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseFixtures([]byte(c.yaml))
			if !errors.Is(err, ErrInvalidFixtures) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalidFixtures containing %q", err, c.want)
			}
		})
	}
	if _, err := parseFixtures([]byte(id + role)); err != nil {
		t.Fatalf("valid fixtures: %v", err)
	}
}
