package authn_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/authn/authntest"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

// BenchmarkLoginJWT is one JWT login per op for each algorithm: "cached"
// presents the same token again (the signature check is cached; expiry,
// audience, claims, template and identity checks still run), "uncached"
// cycles through 256 distinct tokens with a one-entry cache, so every op
// verifies a signature.
func BenchmarkLoginJWT(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA} {
		iss := authntest.NewIssuer(b, "https://ci.example", alg, "k1")
		st := &roleState{
			configs: map[string]*fsmpb.AuthConfig{"c": {Name: "c", Type: "jwt", Issuer: iss.URL, Algorithms: []string{string(alg)},
				Jwks: authntest.JWKS(b, iss), BoundAudiences: []string{"writ"},
				BoundClaims:    []*fsmpb.BoundClaim{{Claim: "repository_owner", Values: []string{"acme"}}},
				EvidenceClaims: []string{"repository", "ref", "workflow"}}},
			roles: map[string]*fsmpb.Role{"ci": {Name: "ci", Environment: "prod", AuthMethods: []string{"jwt"}, AuthConfigs: []string{"c"},
				IdentityTemplate: "ci/{repository}", BoundClaims: []*fsmpb.BoundClaim{{Claim: "ref", Values: []string{"refs/heads/main"}}}}},
			identities: map[string]*fsmpb.Identity{},
		}
		tokens := make([]string, 256)
		for i := range tokens {
			repo := fmt.Sprintf("acme/r%d", i)
			st.identities["ci/"+repo] = &fsmpb.Identity{Id: "ci/" + repo, Environment: "prod", Status: fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE}
			tokens[i] = iss.Mint(b, ghClaims(map[string]any{"repository": repo}))
		}
		for _, mode := range []string{"cached", "uncached"} {
			b.Run(fmt.Sprintf("%s/%s", alg, mode), func(b *testing.B) {
				cfg := authn.Config{}
				if mode == "uncached" {
					cfg.CacheSize = 1
				}
				a := authn.New(cfg)
				ctx := context.Background()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					tok := tokens[0]
					if mode == "uncached" {
						tok = tokens[i%len(tokens)]
						i++
					}
					p, err := a.LoginJWT(ctx, st, authn.JWTProof{Role: "ci", Token: tok}, now)
					if err != nil || p.Identity == nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkLoginMTLS is one mTLS login per op with a SPIFFE leaf signed by
// the configured root: "cached" presents the same chain (chain verification
// cached, time window and every other check re-run), "uncached" alternates
// two chains with a one-entry cache, so every op runs x509 verification.
func BenchmarkLoginMTLS(b *testing.B) {
	f := newFixture(b)
	chains := make([][]*x509.Certificate, 2)
	for i := range chains {
		chains[i] = []*x509.Certificate{f.ca.Issue(b, authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/prod/sa/api"}).Leaf}
	}
	for _, mode := range []string{"cached", "uncached"} {
		b.Run(mode, func(b *testing.B) {
			cfg := authn.Config{}
			if mode == "uncached" {
				cfg.CacheSize = 1
			}
			a := authn.New(cfg)
			at := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				chain := chains[0]
				if mode == "uncached" {
					chain = chains[i%2]
					i++
				}
				p, err := a.LoginMTLS(f.st, authn.MTLSProof{Role: "mesh", Chain: chain}, at)
				if err != nil || p.Identity == nil {
					b.Fatal(err)
				}
			}
		})
	}
}
