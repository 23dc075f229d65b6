package fsm

import (
	"bytes"
	"testing"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

func jwtConfig(name string) *fsmpb.AuthConfig {
	return &fsmpb.AuthConfig{
		Name: name, Type: "jwt", Issuer: "https://ci.example", Algorithms: []string{"RS256", "ES256"},
		JwksUrl: "https://ci.example/jwks", BoundAudiences: []string{"writ"},
		BoundClaims: []*fsmpb.BoundClaim{{Claim: "repository_owner", Values: []string{"acme"}}},
	}
}

func authConfigCmd(c *fsmpb.AuthConfig) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_PutAuthConfig{PutAuthConfig: &fsmpb.PutAuthConfig{Config: c}}}
}

func deleteAuthConfigCmd(name string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_DeleteAuthConfig{DeleteAuthConfig: &fsmpb.DeleteAuthConfig{Name: name}}}
}

// ciRoleCmd is a templated JWT role "ci" in prod using auth config "gh".
func ciRoleCmd() *fsmpb.Command {
	return withRole(roleCmd("ci", "", "prod"), func(p *fsmpb.PutRole) {
		p.Role.IdentityTemplate = "ci/{repository}"
		p.Role.AuthMethods = []string{"jwt"}
		p.Role.AuthConfigs = []string{"gh"}
	})
}

func TestAuthConfigsAndBindings(t *testing.T) {
	t.Parallel()
	mod := func(f func(c *fsmpb.AuthConfig)) func() *fsmpb.Command {
		return func() *fsmpb.Command {
			c := jwtConfig("gh")
			f(c)
			return authConfigCmd(c)
		}
	}
	withGH := func(h *harness) { h.ok(authConfigCmd(jwtConfig("gh"))) }
	roleMod := func(f func(r *fsmpb.Role)) func() *fsmpb.Command {
		return func() *fsmpb.Command { return withRole(ciRoleCmd(), func(p *fsmpb.PutRole) { f(p.Role) }) }
	}
	cases := []struct {
		name  string
		setup func(h *harness)
		cmd   func() *fsmpb.Command
		want  fsmpb.ResultCode
	}{
		{name: "jwt config", cmd: mod(func(*fsmpb.AuthConfig) {}), want: codeOK},
		{name: "mtls config", cmd: func() *fsmpb.Command {
			return authConfigCmd(&fsmpb.AuthConfig{Name: "spiffe", Type: "mtls", CaBundlePem: "-----BEGIN CERTIFICATE-----"})
		}, want: codeOK},
		{name: "unknown type", cmd: mod(func(c *fsmpb.AuthConfig) { c.Type = "saml" }), want: codeInvalid},
		{name: "no key source", cmd: mod(func(c *fsmpb.AuthConfig) { c.JwksUrl = "" }), want: codeInvalid},
		{name: "two key sources", cmd: mod(func(c *fsmpb.AuthConfig) { c.JwksFile = "/etc/jwks.json" }), want: codeInvalid},
		{name: "alg none", cmd: mod(func(c *fsmpb.AuthConfig) { c.Algorithms = []string{"none"} }), want: codeInvalid},
		{name: "hmac alg", cmd: mod(func(c *fsmpb.AuthConfig) { c.Algorithms = []string{"HS256"} }), want: codeInvalid},
		{name: "no algorithms", cmd: mod(func(c *fsmpb.AuthConfig) { c.Algorithms = nil }), want: codeInvalid},
		{name: "no audience", cmd: mod(func(c *fsmpb.AuthConfig) { c.BoundAudiences = nil }), want: codeInvalid},
		{name: "leeway too long", cmd: mod(func(c *fsmpb.AuthConfig) { c.LeewayNanos = 11 * 60 * 1e9 }), want: codeInvalid},
		{name: "jwt with ca bundle", cmd: mod(func(c *fsmpb.AuthConfig) { c.CaBundlePem = "x" }), want: codeInvalid},
		{name: "empty bound claim", cmd: mod(func(c *fsmpb.AuthConfig) { c.BoundClaims = []*fsmpb.BoundClaim{{Claim: "ref"}} }), want: codeInvalid},
		{name: "mtls with issuer", cmd: func() *fsmpb.Command {
			return authConfigCmd(&fsmpb.AuthConfig{Name: "m", Type: "mtls", CaBundlePem: "x", Issuer: "y"})
		}, want: codeInvalid},
		{name: "type change", setup: withGH, cmd: func() *fsmpb.Command {
			return authConfigCmd(&fsmpb.AuthConfig{Name: "gh", Type: "mtls", CaBundlePem: "x"})
		}, want: codePrecondition},
		{name: "create only", setup: withGH, cmd: func() *fsmpb.Command {
			c := authConfigCmd(jwtConfig("gh"))
			c.GetPutAuthConfig().CreateOnly = true
			return c
		}, want: codeExists},
		{name: "stale version", setup: withGH, cmd: func() *fsmpb.Command {
			c := authConfigCmd(jwtConfig("gh"))
			c.GetPutAuthConfig().ExpectVersion = 7
			return c
		}, want: codeAborted},

		{name: "templated role", setup: withGH, cmd: ciRoleCmd, want: codeOK},
		{name: "role names a missing config", cmd: ciRoleCmd, want: codePrecondition},
		{name: "identity and template", setup: withGH, cmd: roleMod(func(r *fsmpb.Role) { r.Identity = "ci/a" }), want: codeInvalid},
		{name: "neither identity nor template", setup: withGH, cmd: roleMod(func(r *fsmpb.Role) { r.IdentityTemplate = "" }), want: codeInvalid},
		{name: "template without placeholder", setup: withGH, cmd: roleMod(func(r *fsmpb.Role) { r.IdentityTemplate = "ci/x" }), want: codeInvalid},
		{name: "unbalanced template", setup: withGH, cmd: roleMod(func(r *fsmpb.Role) { r.IdentityTemplate = "ci/{repo" }), want: codeInvalid},
		{name: "template with approle", setup: withGH, cmd: roleMod(func(r *fsmpb.Role) { r.AuthMethods = []string{"jwt", "approle"} }), want: codeInvalid},
		{name: "jwt role without config", setup: withGH, cmd: roleMod(func(r *fsmpb.Role) { r.AuthConfigs = nil }), want: codeInvalid},
		{name: "config of a method the role lacks", setup: withGH, cmd: roleMod(func(r *fsmpb.Role) { r.AuthMethods = []string{"mtls"} }), want: codeInvalid},
		{name: "bad spiffe pattern", setup: withGH, cmd: roleMod(func(r *fsmpb.Role) { r.BoundSpiffeIds = []string{"example.org/x"} }), want: codeInvalid},
		{name: "bad cidr", setup: withGH, cmd: roleMod(func(r *fsmpb.Role) { r.BoundCidrs = []string{"10.0.0.0/99"} }), want: codeInvalid},
		{name: "bindings", setup: withGH, cmd: roleMod(func(r *fsmpb.Role) {
			r.BoundSpiffeIds = []string{"spiffe://example.org/ci/*"}
			r.BoundCidrs = []string{"10.0.0.0/8", "192.0.2.1"}
			r.BoundClaims = []*fsmpb.BoundClaim{{Claim: "ref", Values: []string{"refs/heads/main"}}}
		}), want: codeOK},

		{name: "delete unused config", setup: withGH, cmd: func() *fsmpb.Command { return deleteAuthConfigCmd("gh") }, want: codeOK},
		{name: "delete missing config", cmd: func() *fsmpb.Command { return deleteAuthConfigCmd("gh") }, want: codeNotFound},
		{name: "delete config in use", setup: func(h *harness) { withGH(h); h.ok(ciRoleCmd()) }, cmd: func() *fsmpb.Command { return deleteAuthConfigCmd("gh") }, want: codePrecondition},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := base(t)
			if tc.setup != nil {
				tc.setup(h)
			}
			before := h.f.StateHash()
			r := h.apply(tc.cmd())[0]
			if r.GetCode() != tc.want {
				t.Fatalf("%v %s, want %v", r.GetCode(), r.GetMessage(), tc.want)
			}
			if tc.want != codeOK && h.f.StateHash() != before {
				t.Fatal("a rejected command changed the state")
			}
		})
	}
}

func TestAuthConfigVersionsAndSnapshot(t *testing.T) {
	t.Parallel()
	h := base(t)
	if v := h.ok(authConfigCmd(jwtConfig("gh"))).GetVersion(); v != 1 {
		t.Fatalf("version %d", v)
	}
	c := authConfigCmd(jwtConfig("gh"))
	c.GetPutAuthConfig().ExpectVersion = 1
	if v := h.ok(c).GetVersion(); v != 2 {
		t.Fatalf("version %d", v)
	}
	got, ok := h.f.View().AuthConfig("gh")
	if !ok || got.GetCreatedUnixNano() != t0.UnixNano() || got.GetVersion() != 2 || len(h.f.View().AuthConfigs()) != 1 {
		t.Fatalf("stored %v", got)
	}
	var buf bytes.Buffer
	if _, err := h.f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	other := New(Config{})
	if err := other.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if other.StateHash() != h.f.StateHash() {
		t.Fatal("restored state differs")
	}
	if _, ok := other.View().AuthConfig("gh"); !ok {
		t.Fatal("auth config lost in the snapshot")
	}
}

// TestTemplatedRoleIssues: a templated role issues only to identities its
// template could render, in its own environment, checked in Apply.
func TestTemplatedRoleIssues(t *testing.T) {
	t.Parallel()
	h := base(t)
	h.ok(authConfigCmd(jwtConfig("gh")))
	h.ok(ciRoleCmd())
	h.ok(identityCmd("ci/acme/api", "prod"))
	h.ok(identityCmd("ci/acme/web", "staging"))
	h.ok(identityCmd("svc/other", "prod"))
	tests := []struct {
		identity string
		want     fsmpb.ResultCode
	}{
		{"ci/acme/api", codeOK},
		{"ci/acme/web", codePrecondition}, // staging identity, prod role
		{"svc/other", codePrecondition},   // outside the template
	}
	for i, tc := range tests {
		r := h.apply(issueCmd(lease{id: "l" + string(rune('a'+i)), identity: tc.identity, role: "ci"}))[0]
		if r.GetCode() != tc.want {
			t.Errorf("%s: %v %s, want %v", tc.identity, r.GetCode(), r.GetMessage(), tc.want)
		}
	}
}

func TestTemplateMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tpl, id string
		want    bool
	}{
		{"ci/{repository}", "ci/acme/api", true},
		{"ci/{repository}", "ci/", false},
		{"ci/{repository}", "cd/acme", false},
		{"k8s/{namespace}/{sa}", "k8s/prod/api", true},
		{"k8s/{namespace}/{sa}", "k8s/prod/", false},
		{"k8s/{namespace}/{sa}", "k8s/a/b/c", true}, // a placeholder may hold a slash
		{"{a}-x-{b}", "1-x-2-x-3", true},
		{"{a}-x-{b}", "-x-2", false},
		{"spiffe/{path}/svc", "spiffe/a/b/svc", true},
		{"spiffe/{path}/svc", "spiffe/a/b/svcx", false},
		{"{a}{b}", "xy", true},
		{"{a}{b}", "x", false},
		{"bad/{", "bad/{", false},
	}
	for _, tc := range tests {
		if got := TemplateMatches(tc.tpl, tc.id); got != tc.want {
			t.Errorf("TemplateMatches(%q, %q) = %v, want %v", tc.tpl, tc.id, got, tc.want)
		}
	}
}
