package rpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/go-jose/go-jose/v4"

	"github.com/writ-dev/writ/authn/authntest"
	"github.com/writ-dev/writ/internal/clock"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// authnPolicy lets prod deploys come only from a CI token of the main
// branch, agents call tools only through mTLS, and backups run by AppRole.
const authnPolicy = `
@id("deploy-from-main-ci-token")
permit (principal, action == Action::"deploy", resource)
when { context has auth && context.auth.method == "jwt" && context.auth has claims && context.auth.claims has ref && context.auth.claims.ref == "refs/heads/main" };

@id("agent-tools-over-mtls")
permit (principal, action == Action::"call_tool", resource)
when { context has auth && context.auth.method == "mtls" && context.auth has spiffe_id };

@id("backup-by-approle")
permit (principal, action == Action::"backup", resource)
when { context has auth && context.auth.method == "approle" };
`

type authnFixture struct {
	c        *nodetest.Cluster
	clock    *clock.Fake
	gh, url  *authntest.Issuer
	clientCA *authntest.CA
	rogueCA  *authntest.CA
	serverCA *x509.CertPool
	oneUse   *writv1.AppRoleProof
}

func newAuthnFixture(t testing.TB) *authnFixture {
	t.Helper()
	serverCA := authntest.NewCA(t, "api root")
	pool := x509.NewCertPool()
	pool.AddCert(serverCA.Cert)
	fc := clock.NewFake(time.Now())
	f := &authnFixture{
		clock:    fc,
		gh:       authntest.NewIssuer(t, "https://token.actions.example", jose.RS256, "gh-1"),
		url:      authntest.NewIssuer(t, "https://url.example", jose.ES256, "u-1"),
		clientCA: authntest.NewCA(t, "mesh root"),
		rogueCA:  authntest.NewCA(t, "rogue root"),
		serverCA: pool,
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(authntest.JWKS(t, f.url)))
	}))
	t.Cleanup(jwks.Close)
	f.c = nodetest.New(t, 1, nodetest.Options{
		Clock: fc,
		TLS: &tls.Config{
			Certificates: []tls.Certificate{serverCA.Issue(t, authntest.Leaf{CN: "writ", ServerAuth: true})},
			ClientAuth:   tls.RequestClientCert, MinVersion: tls.VersionTLS12,
		},
		ClientTLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	})
	ctx := context.Background()
	admin, configs := f.c.Admin(0), f.c.AuthConfigs(0)
	mustOK(t, ignore(admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: authnPolicy}}))))
	mustOK(t, ignore(admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "staging", Cedar: authnPolicy}}))))
	for _, id := range []*writv1.Identity{
		{Id: "ci/acme/api", Kind: "ci_job", Owner: "api", Environment: "prod"},
		{Id: "ci/acme/off", Kind: "ci_job", Owner: "api", Environment: "prod", Status: "disabled"},
		{Id: "mesh/ns/prod/sa/agent", Kind: "agent", Owner: "support", Environment: "prod"},
		{Id: "backup/nightly", Kind: "service_account", Owner: "platform", Environment: "prod"},
	} {
		mustOK(t, ignore(admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: id}))))
	}
	for _, c := range []*writv1.AuthConfig{
		{Name: "gh", Type: "jwt", Issuer: f.gh.URL, Algorithms: []string{"RS256"}, Jwks: authntest.JWKS(t, f.gh),
			BoundAudiences: []string{"writ"}, EvidenceClaims: []string{"repository", "ref", "workflow", "environment"}},
		{Name: "url", Type: "jwt", Issuer: f.url.URL, JwksUrl: jwks.URL, BoundAudiences: []string{"writ"}, EvidenceClaims: []string{"ref"}},
		{Name: "mesh", Type: "mtls", CaBundlePem: f.clientCA.PEM()},
	} {
		mustOK(t, ignore(configs.PutAuthConfig(ctx, connect.NewRequest(&writv1.PutAuthConfigRequest{Config: c}))))
	}
	for _, r := range []*writv1.Role{
		{Name: "ci", Environment: "prod", AuthConfigs: []string{"gh", "url"}, IdentityTemplate: "ci/{repository}",
			BoundClaims: []*writv1.BoundClaim{{Claim: "ref", Values: []string{"refs/heads/*"}}}},
		{Name: "ci-staging", Environment: "staging", AuthConfigs: []string{"gh"}, IdentityTemplate: "ci/{repository}"},
		{Name: "mesh", Environment: "prod", AuthConfigs: []string{"mesh"}, IdentityTemplate: "mesh/{spiffe_path}",
			BoundSpiffeIds: []string{"spiffe://example.org/ns/prod/**"}},
		{Name: "backup", Environment: "prod", Identity: "backup/nightly", AuthMethods: []string{"approle"}},
	} {
		mustOK(t, ignore(admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: r}))))
	}
	role, err := admin.GetRole(ctx, connect.NewRequest(&writv1.GetRoleRequest{Name: "backup"}))
	mustOK(t, err)
	sid, err := admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: "backup", NumUses: 1}))
	mustOK(t, err)
	f.oneUse = &writv1.AppRoleProof{RoleId: role.Msg.GetRole().GetRoleId(), SecretId: sid.Msg.GetSecretId()}
	return f
}

// httpClient trusts the API's CA and presents cert in the handshake when given.
func (f *authnFixture) httpClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: f.serverCA, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// client returns a workload client, presenting cert when given.
func (f *authnFixture) client(cert *tls.Certificate) writv1connect.AuthzServiceClient {
	return writv1connect.NewAuthzServiceClient(f.httpClient(cert), f.c.URL(0))
}

func (f *authnFixture) ghClaims(over map[string]any) map[string]any {
	now := f.clock.Now()
	c := map[string]any{
		"sub": "repo:acme/api:ref:refs/heads/main", "aud": "writ", "iat": now.Add(-time.Minute), "exp": now.Add(5 * time.Minute),
		"repository": "acme/api", "repository_owner": "acme", "ref": "refs/heads/main", "workflow": "deploy", "environment": "production",
	}
	for k, v := range over {
		c[k] = v
	}
	return c
}

func issueWith(proof *writv1.Proof, action, resType string) *connect.Request[writv1.AuthorizeAndIssueRequest] {
	return connect.NewRequest(&writv1.AuthorizeAndIssueRequest{
		Proof:  proof,
		Intent: &writv1.Intent{Action: action, Resource: &writv1.Resource{Type: resType, Id: "x"}},
	})
}

func jwtProof(role, token string) *writv1.Proof {
	return &writv1.Proof{Method: &writv1.Proof_Jwt{Jwt: &writv1.JWTProof{Role: role, Token: token}}}
}

func mtlsProof(role string) *writv1.Proof {
	return &writv1.Proof{Method: &writv1.Proof_Mtls{Mtls: &writv1.MTLSProof{Role: role}}}
}

// TestLoginRejections: every rejection reason through AuthorizeAndIssue on
// a real node answers Unauthenticated or PermissionDenied with its reason
// code and changes no replicated state.
func TestLoginRejections(t *testing.T) {
	f := newAuthnFixture(t)
	ctx := context.Background()
	plain := f.client(nil)
	// Use up the one-use secret id first (that write is expected).
	mustOK(t, ignore(plain.AuthorizeAndIssue(ctx, issueWith(&writv1.Proof{Method: &writv1.Proof_Approle{Approle: f.oneUse}}, "backup", "Database"))))

	now := f.clock.Now()
	good := authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/prod/sa/agent"}
	rogue := f.rogueCA.Issue(t, good)
	outside := f.clientCA.Issue(t, authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/dev/sa/agent"})
	otherKey := authntest.NewIssuer(t, f.gh.URL, jose.RS256, "gh-9")
	sameKid := authntest.NewIssuer(t, f.url.URL, jose.ES256, "u-1")
	cases := []struct {
		name   string
		client writv1connect.AuthzServiceClient
		proof  *writv1.Proof
		code   connect.Code
		reason string
	}{
		{"expired", plain, jwtProof("ci", f.gh.Mint(t, f.ghClaims(map[string]any{"exp": now.Add(-time.Minute)}))), connect.CodeUnauthenticated, "token_expired"},
		{"not yet valid", plain, jwtProof("ci", f.gh.Mint(t, f.ghClaims(map[string]any{"nbf": now.Add(time.Minute)}))), connect.CodeUnauthenticated, "token_not_yet_valid"},
		{"wrong issuer", plain, jwtProof("ci", f.gh.Mint(t, f.ghClaims(map[string]any{"iss": "https://evil.example"}))), connect.CodeUnauthenticated, "wrong_issuer"},
		{"wrong audience", plain, jwtProof("ci", f.gh.Mint(t, f.ghClaims(map[string]any{"aud": "vault"}))), connect.CodeUnauthenticated, "wrong_audience"},
		{"unknown key", plain, jwtProof("ci", otherKey.Mint(t, f.ghClaims(nil))), connect.CodeUnauthenticated, "unknown_key"},
		{"bad signature", plain, jwtProof("ci", sameKid.Mint(t, f.ghClaims(map[string]any{"iss": f.url.URL}))), connect.CodeUnauthenticated, "bad_signature"},
		{"alg none", plain, jwtProof("ci", f.gh.AlgNone(f.ghClaims(nil))), connect.CodeUnauthenticated, "alg_not_allowed"},
		{"algorithm confusion", plain, jwtProof("ci", f.gh.HS256With(t, f.ghClaims(nil))), connect.CodeUnauthenticated, "alg_not_allowed"},
		{"claim mismatch", plain, jwtProof("ci", f.gh.Mint(t, f.ghClaims(map[string]any{"ref": "refs/tags/v1"}))), connect.CodePermissionDenied, "claim_mismatch"},
		{"disabled identity", plain, jwtProof("ci", f.gh.Mint(t, f.ghClaims(map[string]any{"repository": "acme/off"}))), connect.CodePermissionDenied, "identity_disabled"},
		{"wrong environment", plain, jwtProof("ci-staging", f.gh.Mint(t, f.ghClaims(nil))), connect.CodePermissionDenied, "environment_mismatch"},
		{"method not allowed", plain, jwtProof("backup", f.gh.Mint(t, f.ghClaims(nil))), connect.CodePermissionDenied, "method_not_allowed"},
		{"untrusted chain", f.client(&rogue), mtlsProof("mesh"), connect.CodeUnauthenticated, "untrusted_certificate"},
		{"spiffe id outside the pattern", f.client(&outside), mtlsProof("mesh"), connect.CodePermissionDenied, "spiffe_id_mismatch"},
		{"no client certificate", plain, mtlsProof("mesh"), connect.CodeUnauthenticated, "no_client_certificate"},
		{"used-up secret id", plain, &writv1.Proof{Method: &writv1.Proof_Approle{Approle: f.oneUse}}, connect.CodeUnauthenticated, "secret_id_used_up"},
		{"unknown role", plain, jwtProof("nope", f.gh.Mint(t, f.ghClaims(nil))), connect.CodeUnauthenticated, "unknown_role"},
	}
	fsm := f.c.Members[0].Node.FSM()
	before := fsm.StateHash()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.AuthorizeAndIssue(ctx, issueWith(tc.proof, "deploy", "Deployment"))
			if got := connect.CodeOf(err); got != tc.code || reasonOf(err) != tc.reason {
				t.Fatalf("%v %q, want %v %q (err %v)", got, reasonOf(err), tc.code, tc.reason, err)
			}
		})
	}
	if fsm.StateHash() != before {
		t.Fatal("a rejected login changed replicated state")
	}
}

// TestLoginEvidence: each method's evidence reaches Cedar as context.auth
// (the policies above depend on it) and comes back in decision.auth.
func TestLoginEvidence(t *testing.T) {
	f := newAuthnFixture(t)
	ctx := context.Background()
	agent := f.clientCA.Issue(t, authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/prod/sa/agent", CN: "agent"})
	type want struct {
		allowed  bool
		identity string
		auth     map[string]string
	}
	cases := []struct {
		name   string
		client writv1connect.AuthzServiceClient
		proof  *writv1.Proof
		action string
		res    string
		want   want
	}{
		{"ci token of main deploys", f.client(nil), jwtProof("ci", f.gh.Mint(t, f.ghClaims(nil))), "deploy", "Deployment",
			want{true, "ci/acme/api", map[string]string{"method": "jwt", "auth_config": "gh", "issuer": f.gh.URL, "role": "ci"}}},
		{"jwks url", f.client(nil), jwtProof("ci", f.url.Mint(t, f.ghClaims(nil))), "deploy", "Deployment",
			want{true, "ci/acme/api", map[string]string{"method": "jwt", "auth_config": "url", "issuer": f.url.URL}}},
		{"ci token of a branch is denied by policy", f.client(nil), jwtProof("ci", f.gh.Mint(t, f.ghClaims(map[string]any{"ref": "refs/heads/dev"}))), "deploy", "Deployment",
			want{false, "", map[string]string{"method": "jwt"}}},
		{"agent over mtls", f.client(&agent), mtlsProof("mesh"), "call_tool", "Tool",
			want{true, "mesh/ns/prod/sa/agent", map[string]string{"method": "mtls", "spiffe_id": "spiffe://example.org/ns/prod/sa/agent", "trust_domain": "example.org", "subject": "CN=agent"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.client.AuthorizeAndIssue(ctx, issueWith(tc.proof, tc.action, tc.res))
			mustOK(t, err)
			d := resp.Msg.GetDecision()
			if d.GetAllowed() != tc.want.allowed || resp.Msg.GetLease().GetIdentity() != tc.want.identity {
				t.Fatalf("allowed %v identity %q, want %v %q (%v)", d.GetAllowed(), resp.Msg.GetLease().GetIdentity(), tc.want.allowed, tc.want.identity, d)
			}
			auth := d.GetAuth().AsMap()
			for k, v := range tc.want.auth {
				if auth[k] != v {
					t.Errorf("decision.auth.%s = %v, want %q (auth %v)", k, auth[k], v, auth)
				}
			}
			if tc.want.allowed && resp.Msg.GetLease().GetAuthMethod() != tc.want.auth["method"] {
				t.Errorf("lease auth method %q", resp.Msg.GetLease().GetAuthMethod())
			}
		})
	}
	t.Run("fingerprint and claims", func(t *testing.T) {
		resp, err := f.client(&agent).AuthorizeAndIssue(ctx, issueWith(mtlsProof("mesh"), "call_tool", "Tool"))
		mustOK(t, err)
		if fp, _ := resp.Msg.GetDecision().GetAuth().AsMap()["cert_fingerprint"].(string); len(fp) != 64 {
			t.Errorf("fingerprint %q", fp)
		}
		// Calls with the credential carry how it was obtained.
		az, err := f.client(nil).Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
			Credential: resp.Msg.GetCredential(), Action: "call_tool", Resource: &writv1.Resource{Type: "Tool", Id: "x"}, IncludeAuth: true,
		}))
		mustOK(t, err)
		if a := az.Msg.GetDecision().GetAuth().AsMap(); a["method"] != "credential" || a["login_method"] != "mtls" || a["lease_id"] != resp.Msg.GetLease().GetId() {
			t.Errorf("authorize decision.auth %v", a)
		}
		resp, err = f.client(nil).AuthorizeAndIssue(ctx, issueWith(jwtProof("ci", f.gh.Mint(t, f.ghClaims(nil))), "deploy", "Deployment"))
		mustOK(t, err)
		claims, _ := resp.Msg.GetDecision().GetAuth().AsMap()["claims"].(map[string]any)
		if claims["ref"] != "refs/heads/main" || claims["repository"] != "acme/api" || claims["workflow"] != "deploy" {
			t.Errorf("claims %v", claims)
		}
	})
}

// TestAuthConfigAdmin: configs are validated before they reach the log, and
// configured environments bound identities and roles.
func TestAuthConfigAdmin(t *testing.T) {
	f := newAuthnFixture(t)
	ctx := context.Background()
	configs := f.c.AuthConfigs(0)
	fsm := f.c.Members[0].Node.FSM()
	before := fsm.StateHash()
	cases := []struct {
		name string
		call func() error
		code connect.Code
	}{
		{"jwks that does not parse", func() error {
			return ignore(configs.PutAuthConfig(ctx, connect.NewRequest(&writv1.PutAuthConfigRequest{Config: &writv1.AuthConfig{
				Name: "bad", Type: "jwt", Issuer: "x", Jwks: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, BoundAudiences: []string{"writ"}}})))
		}, connect.CodeInvalidArgument},
		{"plain http jwks url", func() error {
			return ignore(configs.PutAuthConfig(ctx, connect.NewRequest(&writv1.PutAuthConfigRequest{Config: &writv1.AuthConfig{
				Name: "bad", Type: "jwt", Issuer: "x", JwksUrl: "http://jwks.example/keys", BoundAudiences: []string{"writ"}}})))
		}, connect.CodeInvalidArgument},
		{"relative jwks file", func() error {
			return ignore(configs.PutAuthConfig(ctx, connect.NewRequest(&writv1.PutAuthConfigRequest{Config: &writv1.AuthConfig{
				Name: "bad", Type: "jwt", Issuer: "x", JwksFile: "keys.json", BoundAudiences: []string{"writ"}}})))
		}, connect.CodeInvalidArgument},
		{"ca bundle that is not pem", func() error {
			return ignore(configs.PutAuthConfig(ctx, connect.NewRequest(&writv1.PutAuthConfigRequest{Config: &writv1.AuthConfig{Name: "bad", Type: "mtls", CaBundlePem: "nope"}})))
		}, connect.CodeInvalidArgument},
		{"no audience", func() error {
			return ignore(configs.PutAuthConfig(ctx, connect.NewRequest(&writv1.PutAuthConfigRequest{Config: &writv1.AuthConfig{
				Name: "bad", Type: "jwt", Issuer: "x", Jwks: authntest.JWKS(t, f.gh)}})))
		}, connect.CodeInvalidArgument},
		{"delete a config in use", func() error {
			return ignore(configs.DeleteAuthConfig(ctx, connect.NewRequest(&writv1.DeleteAuthConfigRequest{Name: "gh"})))
		}, connect.CodeFailedPrecondition},
		{"identity in an unknown environment", func() error {
			return ignore(f.c.Admin(0).PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{Id: "x", Kind: "workload", Owner: "o", Environment: "qa"}})))
		}, connect.CodeInvalidArgument},
		{"no admin token", func() error {
			return ignore(writv1connect.NewAuthConfigServiceClient(f.httpClient(nil), f.c.URL(0)).ListAuthConfigs(ctx, connect.NewRequest(&writv1.ListAuthConfigsRequest{})))
		}, connect.CodeUnauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := connect.CodeOf(tc.call()); got != tc.code {
				t.Fatalf("code %v, want %v", got, tc.code)
			}
		})
	}
	if fsm.StateHash() != before {
		t.Fatal("rejected admin calls changed the state")
	}
	list, err := configs.ListAuthConfigs(ctx, connect.NewRequest(&writv1.ListAuthConfigsRequest{}))
	mustOK(t, err)
	if n := len(list.Msg.GetConfigs()); n != 3 {
		t.Fatalf("%d configs", n)
	}
	got, err := configs.GetAuthConfig(ctx, connect.NewRequest(&writv1.GetAuthConfigRequest{Name: "url"}))
	mustOK(t, err)
	if algs := got.Msg.GetConfig().GetAlgorithms(); len(algs) != 3 {
		t.Errorf("default algorithms %v", algs)
	}
}

// BenchmarkAuthorizeAndIssueByMethod is one AuthorizeAndIssue per op on an
// in-process TLS node, for each login method: authenticate, decide, one
// Raft write (fsync), mint. "jwt-fresh" presents a token not seen before on
// every op (up to 512 ops: run with -benchtime 400x), so it pays a full
// ES256 verification; "jwt-repeat" presents the same token (signature
// cached); mtls reuses one connection, as a workload would.
func BenchmarkAuthorizeAndIssueByMethod(b *testing.B) {
	f := newAuthnFixture(b)
	ctx := context.Background()
	agent := f.clientCA.Issue(b, authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/prod/sa/agent"})
	admin := f.c.Admin(0)
	role, err := admin.GetRole(ctx, connect.NewRequest(&writv1.GetRoleRequest{Name: "backup"}))
	mustOK(b, err)
	sid, err := admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: "backup"}))
	mustOK(b, err)
	approle := &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: role.Msg.GetRole().GetRoleId(), SecretId: sid.Msg.GetSecretId()}}}
	fresh := make([]string, 512)
	for i := range fresh {
		fresh[i] = f.url.Mint(b, f.ghClaims(map[string]any{"jti": fmt.Sprintf("t-%d", i), "exp": time.Now().Add(time.Hour)}))
	}
	repeat := f.url.Mint(b, f.ghClaims(map[string]any{"exp": time.Now().Add(time.Hour)}))
	cases := []struct {
		name   string
		client writv1connect.AuthzServiceClient
		proof  func(i int) *writv1.Proof
		action string
		res    string
	}{
		{"approle", f.client(nil), func(int) *writv1.Proof { return approle }, "backup", "Database"},
		{"jwt-repeat", f.client(nil), func(int) *writv1.Proof { return jwtProof("ci", repeat) }, "deploy", "Deployment"},
		{"jwt-fresh", f.client(nil), func(i int) *writv1.Proof { return jwtProof("ci", fresh[i%len(fresh)]) }, "deploy", "Deployment"},
		{"mtls", f.client(&agent), func(int) *writv1.Proof { return mtlsProof("mesh") }, "call_tool", "Tool"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				resp, err := tc.client.AuthorizeAndIssue(ctx, issueWith(tc.proof(i), tc.action, tc.res))
				i++
				if err != nil || !resp.Msg.GetDecision().GetAllowed() {
					b.Fatalf("%v %v", err, resp.Msg.GetDecision())
				}
			}
		})
	}
}
