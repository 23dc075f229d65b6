package authn_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/authn/authntest"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/internal/clock"
)

// roleState is an in-memory authn.RoleState.
type roleState struct {
	mu         sync.Mutex
	roles      map[string]*fsmpb.Role
	configs    map[string]*fsmpb.AuthConfig
	identities map[string]*fsmpb.Identity
}

func (s *roleState) Bootstrapped() bool { return true }
func (s *roleState) Role(n string) (*fsmpb.Role, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.roles[n]
	return r, ok
}
func (s *roleState) AuthConfig(n string) (*fsmpb.AuthConfig, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.configs[n]
	return c, ok
}
func (s *roleState) Identity(id string) (*fsmpb.Identity, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.identities[id]
	return i, ok
}

const (
	ghIssuer = "https://token.actions.example"
	k8sIss   = "https://kubernetes.default.svc"
)

// fixture is a state with GitHub-style CI, Kubernetes, SPIFFE JWT-SVID and
// mTLS configs and roles, and the keys and CA that mint for them.
type fixture struct {
	st              *roleState
	gh, ghES, other *authntest.Issuer
	k8s, spiffe     *authntest.Issuer
	ca, rogue       *authntest.CA
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		gh:     authntest.NewIssuer(t, ghIssuer, jose.RS256, "gh-1"),
		ghES:   authntest.NewIssuer(t, ghIssuer, jose.ES256, "gh-2"),
		other:  authntest.NewIssuer(t, ghIssuer, jose.ES256, "gh-2"), // same kid, other key
		k8s:    authntest.NewIssuer(t, k8sIss, jose.ES256, "k8s-1"),
		spiffe: authntest.NewIssuer(t, "", jose.EdDSA, "spiffe-1"),
		ca:     authntest.NewCA(t, "mesh root"),
		rogue:  authntest.NewCA(t, "rogue root"),
	}
	active, disabled := fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE, fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED
	ident := func(id, kind, env string, st fsmpb.IdentityStatus) *fsmpb.Identity {
		return &fsmpb.Identity{Id: id, Kind: kind, Owner: "team", Environment: env, Status: st, Epoch: 1}
	}
	f.st = &roleState{
		identities: map[string]*fsmpb.Identity{},
		configs: map[string]*fsmpb.AuthConfig{
			"gh": {Name: "gh", Type: "jwt", Issuer: ghIssuer, Algorithms: []string{"RS256", "ES256"},
				Jwks: authntest.JWKS(t, f.gh, f.ghES), BoundAudiences: []string{"writ"}, LeewayNanos: int64(30 * time.Second),
				BoundClaims:    []*fsmpb.BoundClaim{{Claim: "repository_owner", Values: []string{"acme"}}},
				EvidenceClaims: []string{"repository", "ref", "workflow", "environment"}},
			"k8s": {Name: "k8s", Type: "jwt", Issuer: k8sIss, Algorithms: []string{"ES256"},
				Jwks: authntest.JWKS(t, f.k8s), BoundAudiences: []string{"writ"},
				EvidenceClaims: []string{"namespace=/kubernetes.io/namespace", "service_account=/kubernetes.io/serviceaccount/name"}},
			"spiffe-jwt": {Name: "spiffe-jwt", Type: "jwt", Algorithms: []string{"EdDSA"}, Jwks: authntest.JWKS(t, f.spiffe), BoundAudiences: []string{"writ"}},
			"mesh":       {Name: "mesh", Type: "mtls", CaBundlePem: f.ca.PEM()},
		},
		roles: map[string]*fsmpb.Role{},
	}
	for _, i := range []*fsmpb.Identity{
		ident("ci/acme/api", "ci_job", "prod", active),
		ident("ci/acme/web", "ci_job", "staging", active),
		ident("ci/acme/off", "ci_job", "prod", disabled),
		ident("k8s/prod/api", "workload", "prod", active),
		ident("spiffe/ns/prod/sa/api", "workload", "prod", active),
		ident("mesh/ns/prod/sa/api", "agent", "prod", active),
		ident("mesh/fixed", "agent", "prod", active),
	} {
		f.st.identities[i.Id] = i
	}
	role := func(r *fsmpb.Role) { r.Environment = "prod"; f.st.roles[r.Name] = r }
	role(&fsmpb.Role{Name: "ci-deploy", AuthMethods: []string{"jwt"}, AuthConfigs: []string{"gh"}, IdentityTemplate: "ci/{repository}",
		BoundClaims: []*fsmpb.BoundClaim{{Claim: "ref", Values: []string{"refs/heads/main"}}}})
	role(&fsmpb.Role{Name: "ci-cidr", AuthMethods: []string{"jwt"}, AuthConfigs: []string{"gh"}, IdentityTemplate: "ci/{repository}", BoundCidrs: []string{"10.0.0.0/8"}})
	role(&fsmpb.Role{Name: "ci-approle", AuthMethods: []string{"approle"}, Identity: "ci/acme/api"})
	role(&fsmpb.Role{Name: "k8s", AuthMethods: []string{"jwt"}, AuthConfigs: []string{"k8s"}, IdentityTemplate: "k8s/{/kubernetes.io/namespace}/{/kubernetes.io/serviceaccount/name}"})
	role(&fsmpb.Role{Name: "spiffe-jwt", AuthMethods: []string{"jwt"}, AuthConfigs: []string{"spiffe-jwt"}, IdentityTemplate: "spiffe/{spiffe_path}",
		BoundSpiffeIds: []string{"spiffe://example.org/ns/prod/sa/*"}})
	role(&fsmpb.Role{Name: "mesh", AuthMethods: []string{"mtls"}, AuthConfigs: []string{"mesh"}, IdentityTemplate: "mesh/{spiffe_path}",
		BoundSpiffeIds: []string{"spiffe://example.org/ns/prod/**"}})
	role(&fsmpb.Role{Name: "mesh-cn", AuthMethods: []string{"mtls"}, AuthConfigs: []string{"mesh"}, Identity: "mesh/fixed",
		BoundClaims: []*fsmpb.BoundClaim{{Claim: "subject_cn", Values: []string{"billing-*"}}}})
	staging := &fsmpb.Role{Name: "ci-staging", Environment: "staging", AuthMethods: []string{"jwt"}, AuthConfigs: []string{"gh"}, IdentityTemplate: "ci/{repository}"}
	f.st.roles[staging.Name] = staging
	return f
}

var now = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// ghClaims are a GitHub Actions-style OIDC token's claims for acme/api on main.
func ghClaims(over map[string]any) map[string]any {
	c := map[string]any{
		"sub": "repo:acme/api:ref:refs/heads/main", "aud": "writ",
		"iat": now.Add(-time.Minute), "nbf": now.Add(-time.Minute), "exp": now.Add(5 * time.Minute),
		"repository": "acme/api", "repository_owner": "acme", "ref": "refs/heads/main",
		"workflow": "deploy", "environment": "production", "event_name": "push",
	}
	for k, v := range over {
		c[k] = v
	}
	return c
}

func TestLoginJWT(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := authn.New(authn.Config{Clock: clock.NewFake(now)})
	src := netip.MustParseAddr("10.1.2.3")
	tests := []struct {
		name     string
		role     string
		token    func() string
		source   netip.Addr
		want     error
		identity string
	}{
		{name: "github actions token", role: "ci-deploy", identity: "ci/acme/api", token: func() string { return f.gh.Mint(t, ghClaims(nil)) }},
		{name: "es256 key of the same issuer", role: "ci-deploy", identity: "ci/acme/api", token: func() string { return f.ghES.Mint(t, ghClaims(nil)) }},
		{name: "audience list", role: "ci-deploy", identity: "ci/acme/api", token: func() string { return f.gh.Mint(t, ghClaims(map[string]any{"aud": []string{"other", "writ"}})) }},
		{name: "within leeway after exp", role: "ci-deploy", identity: "ci/acme/api", token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"exp": now.Add(-10 * time.Second)}))
		}},
		{name: "kubernetes token", role: "k8s", identity: "k8s/prod/api", token: func() string {
			return f.k8s.Mint(t, map[string]any{"sub": "system:serviceaccount:prod:api", "aud": []string{"writ"}, "exp": now.Add(time.Hour), "iat": now,
				"kubernetes.io": map[string]any{"namespace": "prod", "serviceaccount": map[string]any{"name": "api", "uid": "u-1"}}})
		}},
		{name: "spiffe jwt-svid", role: "spiffe-jwt", identity: "spiffe/ns/prod/sa/api", token: func() string {
			return f.spiffe.Mint(t, map[string]any{"iss": nil, "sub": "spiffe://example.org/ns/prod/sa/api", "aud": "writ", "exp": now.Add(time.Minute)})
		}},

		{name: "expired", role: "ci-deploy", want: authn.ErrTokenExpired, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"exp": now.Add(-31 * time.Second)}))
		}},
		{name: "not yet valid", role: "ci-deploy", want: authn.ErrTokenNotYet, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"nbf": now.Add(time.Minute)}))
		}},
		{name: "issued in the future", role: "ci-deploy", want: authn.ErrTokenNotYet, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"iat": now.Add(time.Minute), "nbf": nil}))
		}},
		{name: "no exp", role: "ci-deploy", want: authn.ErrMalformedToken, token: func() string { return f.gh.Mint(t, ghClaims(map[string]any{"exp": nil})) }},
		{name: "wrong issuer", role: "ci-deploy", want: authn.ErrWrongIssuer, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"iss": "https://evil.example"}))
		}},
		{name: "no issuer", role: "ci-deploy", want: authn.ErrWrongIssuer, token: func() string { return f.gh.Mint(t, ghClaims(map[string]any{"iss": nil})) }},
		{name: "wrong audience", role: "ci-deploy", want: authn.ErrWrongAudience, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"aud": "vault"}))
		}},
		{name: "unknown key", role: "ci-deploy", want: authn.ErrUnknownKey, token: func() string {
			return authntest.NewIssuer(t, ghIssuer, jose.ES256, "gh-9").Mint(t, ghClaims(nil))
		}},
		{name: "bad signature", role: "ci-deploy", want: authn.ErrBadSignature, token: func() string { return f.other.Mint(t, ghClaims(nil)) }},
		{name: "tampered payload", role: "ci-deploy", want: authn.ErrBadSignature, token: func() string {
			good := f.gh.Mint(t, ghClaims(nil))
			forged := f.gh.AlgNone(ghClaims(map[string]any{"repository": "acme/web"}))
			return headerOf(good) + "." + payloadOf(forged) + "." + sigOf(good)
		}},
		{name: "alg none", role: "ci-deploy", want: authn.ErrAlgNotAllowed, token: func() string { return f.gh.AlgNone(ghClaims(nil)) }},
		{name: "hs256 keyed with the public key", role: "ci-deploy", want: authn.ErrAlgNotAllowed, token: func() string { return f.gh.HS256With(t, ghClaims(nil)) }},
		{name: "algorithm the config does not accept", role: "ci-deploy", want: authn.ErrAlgNotAllowed, token: func() string {
			return authntest.NewIssuer(t, ghIssuer, jose.EdDSA, "gh-1").Mint(t, ghClaims(nil))
		}},
		{name: "es256 header on the rsa key", role: "ci-deploy", want: authn.ErrUnknownKey, token: func() string {
			return authntest.NewIssuer(t, ghIssuer, jose.ES256, "gh-1").Mint(t, ghClaims(nil))
		}},
		{name: "malformed", role: "ci-deploy", want: authn.ErrMalformedToken, token: func() string { return "not.a.jwt" }},
		{name: "two parts", role: "ci-deploy", want: authn.ErrMalformedToken, token: func() string { return "abc.def" }},
		{name: "empty", role: "ci-deploy", want: authn.ErrMalformedToken, token: func() string { return "" }},
		{name: "role claim mismatch (branch)", role: "ci-deploy", want: authn.ErrClaimMismatch, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"ref": "refs/heads/feature"}))
		}},
		{name: "config claim mismatch (owner)", role: "ci-deploy", want: authn.ErrClaimMismatch, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"repository_owner": "evilcorp"}))
		}},
		{name: "claim missing", role: "ci-deploy", want: authn.ErrClaimMismatch, token: func() string { return f.gh.Mint(t, ghClaims(map[string]any{"ref": nil})) }},
		{name: "spiffe id outside the pattern", role: "spiffe-jwt", want: authn.ErrSPIFFEIDMismatch, token: func() string {
			return f.spiffe.Mint(t, map[string]any{"iss": nil, "sub": "spiffe://example.org/ns/dev/sa/api", "aud": "writ", "exp": now.Add(time.Minute)})
		}},
		{name: "subject is not a spiffe id", role: "spiffe-jwt", want: authn.ErrSPIFFEIDMismatch, token: func() string {
			return f.spiffe.Mint(t, map[string]any{"iss": nil, "sub": "api", "aud": "writ", "exp": now.Add(time.Minute)})
		}},
		{name: "disabled identity", role: "ci-deploy", want: authn.ErrIdentityDisabled, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"repository": "acme/off"}))
		}},
		{name: "wrong environment", role: "ci-staging", want: authn.ErrEnvironmentMismatch, token: func() string { return f.gh.Mint(t, ghClaims(nil)) }},
		{name: "identity not registered", role: "ci-deploy", want: authn.ErrIdentityNotFound, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"repository": "acme/unknown"}))
		}},
		{name: "template value with a space", role: "ci-deploy", want: authn.ErrIdentityTemplate, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"repository": "acme/a b"}))
		}},
		{name: "template value not text", role: "ci-deploy", want: authn.ErrIdentityTemplate, token: func() string {
			return f.gh.Mint(t, ghClaims(map[string]any{"repository": map[string]any{"x": 1}}))
		}},
		{name: "method not allowed", role: "ci-approle", want: authn.ErrMethodNotAllowed, token: func() string { return f.gh.Mint(t, ghClaims(nil)) }},
		{name: "unknown role", role: "nope", want: authn.ErrUnknownRole, token: func() string { return f.gh.Mint(t, ghClaims(nil)) }},
		{name: "source outside the role's cidrs", role: "ci-cidr", source: netip.MustParseAddr("192.0.2.1"), want: authn.ErrSourceNotAllowed, token: func() string {
			return f.gh.Mint(t, ghClaims(nil))
		}},
		{name: "source inside the role's cidrs", role: "ci-cidr", identity: "ci/acme/api", token: func() string { return f.gh.Mint(t, ghClaims(nil)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.source
			if !s.IsValid() {
				s = src
			}
			p, err := a.LoginJWT(context.Background(), f.st, authn.JWTProof{Role: tc.role, Token: tc.token(), Source: s}, now)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
				if authn.Reason(err) == "" {
					t.Fatal("no reason code")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Identity.GetId() != tc.identity || p.Method != authn.MethodJWT || p.Evidence["method"] != "jwt" {
				t.Fatalf("principal %v via %s, evidence %v", p.Identity.GetId(), p.Method, p.Evidence)
			}
		})
	}
}

func headerOf(tok string) string  { return part(tok, 0) }
func payloadOf(tok string) string { return part(tok, 1) }
func sigOf(tok string) string     { return part(tok, 2) }
func part(tok string, i int) string {
	for ; i > 0; i-- {
		for j := 0; j < len(tok); j++ {
			if tok[j] == '.' {
				tok = tok[j+1:]
				break
			}
		}
	}
	for j := 0; j < len(tok); j++ {
		if tok[j] == '.' {
			return tok[:j]
		}
	}
	return tok
}

func TestJWTEvidence(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := authn.New(authn.Config{})
	p, err := a.LoginJWT(context.Background(), f.st, authn.JWTProof{Role: "ci-deploy", Token: f.gh.Mint(t, ghClaims(nil)), Source: netip.MustParseAddr("::ffff:10.0.0.9")}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"method": "jwt", "role": "ci-deploy", "auth_config": "gh", "issuer": ghIssuer, "subject": "repo:acme/api:ref:refs/heads/main",
		"source_ip": "10.0.0.9",
		"claims":    map[string]any{"repository": "acme/api", "ref": "refs/heads/main", "workflow": "deploy", "environment": "production"},
	}
	if d := cmp.Diff(want, p.Evidence); d != "" {
		t.Errorf("evidence (-want +got):\n%s", d)
	}

	k8s := f.k8s.Mint(t, map[string]any{"sub": "system:serviceaccount:prod:api", "aud": "writ", "exp": now.Add(time.Hour),
		"kubernetes.io": map[string]any{"namespace": "prod", "serviceaccount": map[string]any{"name": "api"}}})
	p, err = a.LoginJWT(context.Background(), f.st, authn.JWTProof{Role: "k8s", Token: k8s}, now)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]any{"namespace": "prod", "service_account": "api"}, p.Evidence["claims"]); d != "" {
		t.Errorf("k8s claims (-want +got):\n%s", d)
	}
	if _, ok := p.Evidence["source_ip"]; ok {
		t.Error("source_ip present without a source")
	}

	svid := f.spiffe.Mint(t, map[string]any{"iss": nil, "sub": "spiffe://example.org/ns/prod/sa/api", "aud": "writ", "exp": now.Add(time.Minute)})
	p, err = a.LoginJWT(context.Background(), f.st, authn.JWTProof{Role: "spiffe-jwt", Token: svid}, now)
	if err != nil {
		t.Fatal(err)
	}
	if p.Evidence["spiffe_id"] != "spiffe://example.org/ns/prod/sa/api" || p.Evidence["trust_domain"] != "example.org" {
		t.Errorf("svid evidence %v", p.Evidence)
	}
}

// TestJWTCacheRechecksEverything: a cached signature does not skip expiry
// or the identity's status.
func TestJWTCacheRechecksEverything(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := authn.New(authn.Config{})
	tok := f.gh.Mint(t, ghClaims(nil))
	login := func(at time.Time) error {
		_, err := a.LoginJWT(context.Background(), f.st, authn.JWTProof{Role: "ci-deploy", Token: tok}, at)
		return err
	}
	if err := login(now); err != nil {
		t.Fatal(err)
	}
	if err := login(now.Add(time.Hour)); !errors.Is(err, authn.ErrTokenExpired) {
		t.Fatalf("cached token after expiry: %v", err)
	}
	f.st.mu.Lock()
	off := proto.Clone(f.st.identities["ci/acme/api"]).(*fsmpb.Identity)
	off.Status = fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED
	f.st.identities["ci/acme/api"] = off
	f.st.mu.Unlock()
	if err := login(now); !errors.Is(err, authn.ErrIdentityDisabled) {
		t.Fatalf("cached token for a disabled identity: %v", err)
	}
}

// TestJWKSURL serves a JWKS from a local test server: first use fetches it,
// a token with a new key id refetches it (key rotation), a server outage
// keeps the last known good keys, and the refresh interval re-reads it in
// the background.
func TestJWKSURL(t *testing.T) {
	t.Parallel()
	k1 := authntest.NewIssuer(t, ghIssuer, jose.ES256, "k1")
	k2 := authntest.NewIssuer(t, ghIssuer, jose.ES256, "k2")
	var (
		mu      sync.Mutex
		body    = authntest.JWKS(t, k1)
		down    bool
		fetches atomic.Int32
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)

	clk := clock.NewFake(now)
	a := authn.New(authn.Config{Clock: clk, JWKSRefresh: time.Minute, JWKSMinRetry: 10 * time.Second})
	st := &roleState{
		configs: map[string]*fsmpb.AuthConfig{"gh": {Name: "gh", Type: "jwt", Issuer: ghIssuer, Algorithms: []string{"ES256"},
			JwksUrl: srv.URL + "/jwks", BoundAudiences: []string{"writ"}}},
		roles:      map[string]*fsmpb.Role{"ci": {Name: "ci", Environment: "prod", AuthMethods: []string{"jwt"}, AuthConfigs: []string{"gh"}, IdentityTemplate: "ci/{repository}"}},
		identities: map[string]*fsmpb.Identity{"ci/acme/api": {Id: "ci/acme/api", Environment: "prod", Status: fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE}},
	}
	cfg, _ := st.AuthConfig("gh")
	if err := a.ValidateAuthConfig(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	login := func(iss *authntest.Issuer) error {
		claims := ghClaims(nil)
		claims["iat"], claims["nbf"], claims["exp"] = clk.Now().Add(-time.Second), clk.Now().Add(-time.Second), clk.Now().Add(time.Hour)
		_, err := a.LoginJWT(context.Background(), st, authn.JWTProof{Role: "ci", Token: iss.Mint(t, claims)}, clk.Now())
		return err
	}
	if err := login(k1); err != nil {
		t.Fatal(err)
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches after validation and a login, want 1 (cached)", n)
	}

	// Rotation: k2 appears at the URL; a k2 token within min-retry of the
	// last fetch is refused, after it the URL is re-read and it works.
	mu.Lock()
	body = authntest.JWKS(t, k1, k2)
	mu.Unlock()
	if err := login(k2); !errors.Is(err, authn.ErrUnknownKey) {
		t.Fatalf("k2 before min retry: %v", err)
	}
	clk.Advance(11 * time.Second)
	if err := login(k2); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}

	// Outage: the server fails; the refresh interval passes; the next login
	// triggers a background refresh that fails and keeps the known keys.
	mu.Lock()
	down = true
	mu.Unlock()
	before := fetches.Load()
	clk.Advance(2 * time.Minute)
	if err := login(k1); err != nil {
		t.Fatalf("login during the outage: %v", err)
	}
	waitFor(t, func() bool { return fetches.Load() > before })
	if err := login(k2); err != nil {
		t.Fatalf("last known good keys lost: %v", err)
	}
	mu.Lock()
	down = false
	mu.Unlock()

	// A config whose URL never answered has no keys: keys_unavailable.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	st.mu.Lock()
	st.configs["gh"] = &fsmpb.AuthConfig{Name: "gh", Type: "jwt", Issuer: ghIssuer, Algorithms: []string{"ES256"}, JwksUrl: dead.URL, BoundAudiences: []string{"writ"}}
	st.mu.Unlock()
	if err := login(k1); !errors.Is(err, authn.ErrKeysUnavailable) || !authn.IsUnavailable(err) {
		t.Fatalf("unreachable jwks: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not waiting for time to pass
	}
}

func TestLoginMTLS(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := authn.New(authn.Config{})
	leaf := func(ca *authntest.CA, l authntest.Leaf) []*x509.Certificate {
		return []*x509.Certificate{ca.Issue(t, l).Leaf}
	}
	api := authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/prod/sa/api", CN: "api"}
	tests := []struct {
		name     string
		role     string
		chain    func() []*x509.Certificate
		at       time.Time
		want     error
		identity string
	}{
		{name: "x509-svid", role: "mesh", identity: "mesh/ns/prod/sa/api", chain: func() []*x509.Certificate { return leaf(f.ca, api) }},
		{name: "subject cn", role: "mesh-cn", identity: "mesh/fixed", chain: func() []*x509.Certificate { return leaf(f.ca, authntest.Leaf{CN: "billing-worker"}) }},
		{name: "untrusted chain", role: "mesh", want: authn.ErrUntrustedChain, chain: func() []*x509.Certificate { return leaf(f.rogue, api) }},
		{name: "expired certificate", role: "mesh", want: authn.ErrUntrustedChain, chain: func() []*x509.Certificate {
			return leaf(f.ca, authntest.Leaf{SPIFFEID: api.SPIFFEID, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
		}},
		{name: "not yet valid certificate", role: "mesh", want: authn.ErrUntrustedChain, chain: func() []*x509.Certificate {
			return leaf(f.ca, authntest.Leaf{SPIFFEID: api.SPIFFEID, NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(2 * time.Hour)})
		}},
		{name: "no certificate", role: "mesh", want: authn.ErrNoClientCert, chain: func() []*x509.Certificate { return nil }},
		{name: "spiffe id outside the pattern", role: "mesh", want: authn.ErrSPIFFEIDMismatch, chain: func() []*x509.Certificate {
			return leaf(f.ca, authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/dev/sa/api"})
		}},
		{name: "other trust domain", role: "mesh", want: authn.ErrSPIFFEIDMismatch, chain: func() []*x509.Certificate {
			return leaf(f.ca, authntest.Leaf{SPIFFEID: "spiffe://evil.org/ns/prod/sa/api"})
		}},
		{name: "no spiffe id", role: "mesh", want: authn.ErrSPIFFEIDMismatch, chain: func() []*x509.Certificate { return leaf(f.ca, authntest.Leaf{CN: "api"}) }},
		{name: "subject claim mismatch", role: "mesh-cn", want: authn.ErrClaimMismatch, chain: func() []*x509.Certificate { return leaf(f.ca, authntest.Leaf{CN: "orders"}) }},
		{name: "identity not registered", role: "mesh", want: authn.ErrIdentityNotFound, chain: func() []*x509.Certificate {
			return leaf(f.ca, authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/prod/sa/web"})
		}},
		{name: "method not allowed", role: "ci-deploy", want: authn.ErrMethodNotAllowed, chain: func() []*x509.Certificate { return leaf(f.ca, api) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			at := tc.at
			if at.IsZero() {
				at = time.Now()
			}
			p, err := a.LoginMTLS(f.st, authn.MTLSProof{Role: tc.role, Chain: tc.chain(), Source: netip.MustParseAddr("127.0.0.1")}, at)
			if tc.want != nil {
				if !errors.Is(err, tc.want) || authn.Reason(err) == "" {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Identity.GetId() != tc.identity || p.Evidence["method"] != "mtls" {
				t.Fatalf("principal %s, evidence %v", p.Identity.GetId(), p.Evidence)
			}
		})
	}
}

func TestMTLSEvidenceAndCache(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := authn.New(authn.Config{})
	cert := f.ca.Issue(t, authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/prod/sa/api", CN: "api", NotAfter: time.Now().Add(time.Hour)})
	proof := authn.MTLSProof{Role: "mesh", Chain: []*x509.Certificate{cert.Leaf}}
	p, err := a.LoginMTLS(f.st, proof, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"method": "mtls", "auth_config": "mesh", "spiffe_id": "spiffe://example.org/ns/prod/sa/api", "trust_domain": "example.org",
		"subject": "CN=api", "issuer": "CN=mesh root,O=writ test",
	} {
		if p.Evidence[k] != want {
			t.Errorf("evidence %s = %v, want %q", k, p.Evidence[k], want)
		}
	}
	if fp, _ := p.Evidence["cert_fingerprint"].(string); len(fp) != 64 {
		t.Errorf("fingerprint %q", fp)
	}
	// The cached chain is still checked against time.
	if _, err := a.LoginMTLS(f.st, proof, time.Now().Add(2*time.Hour)); !errors.Is(err, authn.ErrUntrustedChain) {
		t.Fatalf("cached chain after its expiry: %v", err)
	}
}

func TestMatchSPIFFEID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, id string
		want        bool
	}{
		{"spiffe://example.org/ns/prod/sa/*", "spiffe://example.org/ns/prod/sa/api", true},
		{"spiffe://example.org/ns/prod/sa/*", "spiffe://example.org/ns/prod/sa/api/x", false},
		{"spiffe://example.org/ns/prod/**", "spiffe://example.org/ns/prod/sa/api/x", true},
		{"spiffe://example.org/ns/prod/**", "spiffe://example.org/ns/prod", false},
		{"spiffe://example.org/ns/*/sa/api", "spiffe://example.org/ns/dev/sa/api", true},
		{"spiffe://example.org/ns/prod/sa/api-*", "spiffe://example.org/ns/prod/sa/api-v2", true},
		{"spiffe://example.org/ns/prod/sa/api", "spiffe://other.org/ns/prod/sa/api", false},
		{"spiffe://example.org", "spiffe://example.org", true},
		{"spiffe://example.org", "spiffe://example.org/x", false},
		{"example.org/x", "spiffe://example.org/x", false},
	}
	for _, tc := range tests {
		id, err := authn.ParseSPIFFEID(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if got := authn.MatchSPIFFEID(tc.pattern, id); got != tc.want {
			t.Errorf("MatchSPIFFEID(%q, %q) = %v, want %v", tc.pattern, tc.id, got, tc.want)
		}
	}
}

func TestGlob(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"refs/heads/main", "refs/heads/main", true}, {"refs/heads/*", "refs/heads/a/b", true}, {"refs/tags/v*", "refs/heads/v1", false},
		{"*", "", true}, {"a*b*c", "aXbYc", true}, {"a*b*c", "aXbY", false}, {"", "", true}, {"", "x", false},
		{"*a*", "bab", true}, {"a**", "a", true}, {"*ab", "aab", true}, {"a*ab", "aab", true}, {"a*ab", "ab", false},
	} {
		if got := authn.Glob(tc.p, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}
