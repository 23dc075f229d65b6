package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/writ-dev/writ/authn/authntest"
)

// freePort reserves a loopback address by listening and closing.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoginMethodsEndToEnd runs `writ server` over TLS in process and drives
// it with the CLI as an operator and three workloads would: register
// identities, auth configs and roles, then log in by AppRole, by a CI OIDC
// JWT (keys from a JWKS file) and by mTLS with a SPIFFE certificate, and see
// each method's evidence in the decision that policy made.
func TestLoginMethodsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	dir := t.TempDir()
	serverCA := authntest.NewCA(t, "api root")
	meshCA := authntest.NewCA(t, "mesh root")
	server := serverCA.Issue(t, authntest.Leaf{CN: "writ", ServerAuth: true})
	agent := meshCA.Issue(t, authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/prod/sa/agent", CN: "agent"})
	ci := authntest.NewIssuer(t, "https://token.actions.example", jose.ES256, "ci-1")

	files := map[string]string{
		"server.pem": authntest.CertPEM(server), "server.key": authntest.KeyPEM(t, server),
		"ca.pem": serverCA.PEM(), "mesh-ca.pem": meshCA.PEM(),
		"agent.pem": authntest.CertPEM(agent), "agent.key": authntest.KeyPEM(t, agent),
		"jwks.json": authntest.JWKS(t, ci),
		"prod.cedar": `
@id("prod-deploy-from-main")
@reason("prod deploys only from a CI token of the main branch")
permit (principal is CiJob, action == Action::"deploy", resource)
when { context has auth && context.auth.method == "jwt" && context.auth has claims && context.auth.claims has ref && context.auth.claims.ref == "refs/heads/main" };

@id("prod-agent-mtls")
@reason("this agent only through mTLS")
permit (principal is Agent, action == Action::"call_tool", resource)
when { context has auth && context.auth.method == "mtls" && context.auth has spiffe_id };

@id("prod-backup-approle")
@reason("backups by AppRole")
permit (principal is ServiceAccount, action == Action::"backup", resource)
when { context has auth && context.auth.method == "approle" };
`,
	}
	path := map[string]string{}
	for name, body := range files {
		path[name] = writeFile(t, dir, name, body)
	}
	token := func(ref string) string {
		now := time.Now()
		return writeFile(t, dir, "token-"+strings.ReplaceAll(ref, "/", "_"), ci.Mint(t, map[string]any{
			"sub": "repo:acme/api:ref:" + ref, "aud": "writ", "iat": now.Add(-time.Minute), "exp": now.Add(10 * time.Minute),
			"repository": "acme/api", "repository_owner": "acme", "ref": ref, "workflow": "release", "environment": "production",
		}))
	}

	api := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	admin := "writ_admin_e2e_authn"
	go func() {
		done <- run(ctx, []string{"server", "--node-id", "n1", "--data-dir", filepath.Join(dir, "data"), "--bootstrap",
			"--api-addr", api, "--raft-addr", freePort(t), "--tls-cert", path["server.pem"], "--tls-key", path["server.key"], "--log-level", "warn"},
			strings.NewReader(""), &syncBuffer{}, &stderr, func(k string) string {
				if k == envAdminToken {
					return admin
				}
				return ""
			})
	}()
	env := map[string]string{envAddr: "https://" + api, envToken: admin, envCACert: path["ca.pem"]}
	cli := func(args ...string) result {
		t.Helper()
		return runCLI(t, env, "", args...)
	}
	ok := func(args ...string) string {
		t.Helper()
		r := cli(args...)
		if r.code != 0 {
			t.Fatalf("writ %s: exit %d\nstdout:\n%s\nstderr:\n%s\nserver:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr, stderr.String())
		}
		return r.stdout
	}
	deadline := time.Now().Add(60 * time.Second)
	for cli("identity", "list").code != 0 {
		select {
		case code := <-done:
			t.Fatalf("writ server exited %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready within 60s: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling readiness, not waiting for time
	}

	// The operator: a policy set, identities, auth configs, roles.
	ok("policy", "put", "prod", "--file", path["prod.cedar"])
	ok("identity", "put", "ci/acme/api", "--kind", "ci_job", "--owner", "api", "--env", "prod")
	ok("identity", "put", "mesh/ns/prod/sa/agent", "--kind", "agent", "--owner", "support", "--env", "prod")
	ok("identity", "put", "backup/nightly", "--kind", "service_account", "--owner", "platform", "--env", "prod")
	ok("auth-config", "put", "ci", "--type", "jwt", "--issuer", ci.URL, "--alg", "ES256", "--jwks-file", path["jwks.json"],
		"--audience", "writ", "--bound-claim", "repository_owner=acme", "--leeway", "30s",
		"--evidence-claim", "ref", "--evidence-claim", "repository", "--evidence-claim", "workflow")
	ok("auth-config", "put", "mesh", "--type", "mtls", "--ca-bundle", "@"+path["mesh-ca.pem"])
	ok("role", "put", "ci", "--env", "prod", "--auth-config", "ci", "--identity-template", "ci/{repository}", "--bound-claim", "ref=refs/heads/*")
	ok("role", "put", "mesh", "--env", "prod", "--auth-config", "mesh", "--identity-template", "mesh/{spiffe_path}",
		"--bound-spiffe-id", "spiffe://example.org/ns/prod/**")
	ok("role", "put", "backup", "--env", "prod", "--identity", "backup/nightly", "--auth-method", "approle")
	roleID := strings.TrimSpace(ok("role", "get", "backup", "-o", "field=role.role_id"))
	secret := strings.TrimSpace(ok("secret-id", "create", "backup", "--uses", "1", "-o", "field=secret_id"))
	if list := ok("auth-config", "list"); !strings.Contains(list, "file "+path["jwks.json"]) || !strings.Contains(list, "ca bundle") {
		t.Fatalf("auth-config list:\n%s", list)
	}

	// The workloads: one login per method, each answered with its evidence.
	type issue struct {
		Decision struct {
			Allowed bool           `json:"allowed"`
			Auth    map[string]any `json:"auth"`
		} `json:"decision"`
		Lease struct {
			Identity   string `json:"identity"`
			AuthMethod string `json:"authMethod"`
		} `json:"lease"`
		Credential string `json:"credential"`
	}
	login := func(args ...string) issue {
		t.Helper()
		var out issue
		if err := json.Unmarshal([]byte(ok(append(args, "-o", "json")...)), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	approle := login("issue", "--role-id", roleID, "--secret-id", secret, "--action", "backup", "--resource", "Database::orders")
	jwt := login("issue", "--role", "ci", "--jwt", "@"+token("refs/heads/main"), "--action", "deploy", "--resource", "Deployment::api")
	mtls := login("--client-cert", path["agent.pem"], "--client-key", path["agent.key"],
		"issue", "--role", "mesh", "--mtls", "--action", "call_tool", "--resource", "Tool::kb.search")
	for _, tc := range []struct {
		name     string
		got      issue
		identity string
		auth     map[string]string
	}{
		{"approle", approle, "backup/nightly", map[string]string{"method": "approle", "role": "backup", "source_ip": "127.0.0.1"}},
		{"jwt", jwt, "ci/acme/api", map[string]string{"method": "jwt", "role": "ci", "auth_config": "ci", "issuer": ci.URL, "subject": "repo:acme/api:ref:refs/heads/main"}},
		{"mtls", mtls, "mesh/ns/prod/sa/agent", map[string]string{"method": "mtls", "auth_config": "mesh", "spiffe_id": "spiffe://example.org/ns/prod/sa/agent", "subject": "CN=agent"}},
	} {
		if !tc.got.Decision.Allowed || tc.got.Lease.Identity != tc.identity || tc.got.Lease.AuthMethod != tc.auth["method"] {
			t.Errorf("%s: allowed %v, lease %+v", tc.name, tc.got.Decision.Allowed, tc.got.Lease)
		}
		for k, v := range tc.auth {
			if tc.got.Decision.Auth[k] != v {
				t.Errorf("%s: decision.auth.%s = %v, want %q", tc.name, k, tc.got.Decision.Auth[k], v)
			}
		}
	}
	if claims, _ := jwt.Decision.Auth["claims"].(map[string]any); claims["ref"] != "refs/heads/main" || claims["workflow"] != "release" {
		t.Errorf("jwt claims evidence %v", jwt.Decision.Auth["claims"])
	}
	if fp, _ := mtls.Decision.Auth["cert_fingerprint"].(string); len(fp) != 64 {
		t.Errorf("mtls fingerprint %q", fp)
	}

	// Text output shows the evidence too; a feature-branch token is denied
	// by the policy (exit 3), and the used-up secret id is refused.
	text := cli("issue", "--role", "ci", "--jwt", "@"+token("refs/heads/feature"), "--action", "deploy", "--resource", "Deployment::api")
	if text.code != exitNegative || !strings.Contains(text.stdout, "claims.ref=refs/heads/feature") || !strings.Contains(text.stdout, "method=jwt") {
		t.Errorf("feature branch: exit %d\n%s%s", text.code, text.stdout, text.stderr)
	}
	again := cli("issue", "--role-id", roleID, "--secret-id", secret, "--action", "backup", "--resource", "Database::orders")
	if again.code != 1 || !strings.Contains(again.stderr, "secret_id_used_up") {
		t.Errorf("used-up secret id: exit %d\n%s", again.code, again.stderr)
	}
	noCert := cli("issue", "--role", "mesh", "--mtls", "--action", "call_tool", "--resource", "Tool::kb.search")
	if noCert.code != 1 || !strings.Contains(noCert.stderr, "no_client_certificate") {
		t.Errorf("mtls without a certificate: exit %d\n%s", noCert.code, noCert.stderr)
	}

	// Disabling the identity invalidates what it holds at once and stops
	// its logins; the credential from the JWT login is now inactive.
	ok("identity", "disable", "ci/acme/api")
	if v := cli("verify", jwt.Credential); v.code != exitNegative || !strings.Contains(v.stdout, "identity_disabled") {
		t.Errorf("credential of a disabled identity: exit %d\n%s", v.code, v.stdout)
	}
	if d := cli("issue", "--role", "ci", "--jwt", "@"+token("refs/heads/main"), "--action", "deploy", "--resource", "Deployment::api"); d.code != 1 || !strings.Contains(d.stderr, "identity_disabled") {
		t.Errorf("login of a disabled identity: exit %d\n%s", d.code, d.stderr)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("writ server exited %d:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writ server did not stop within 30s")
	}
}
