package authn

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// fuzzState is one role over one inline-JWKS config: enough for LoginJWT
// to run every check on whatever token the fuzzer makes.
type fuzzState struct{ cfg *fsmpb.AuthConfig }

func (fuzzState) Bootstrapped() bool { return true }
func (fuzzState) Role(name string) (*fsmpb.Role, bool) {
	return &fsmpb.Role{Name: name, Environment: "prod", AuthMethods: []string{MethodJWT}, AuthConfigs: []string{"c"},
		IdentityTemplate: "ci/{repository}", BoundClaims: []*fsmpb.BoundClaim{{Claim: "/a/b", Values: []string{"x*"}}}}, true
}
func (s fuzzState) AuthConfig(string) (*fsmpb.AuthConfig, bool) { return s.cfg, true }
func (fuzzState) Identity(id string) (*fsmpb.Identity, bool) {
	return &fsmpb.Identity{Id: id, Environment: "prod", Status: fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE}, true
}

// The ES256 public key of RFC 7515 appendix A.3; testdata/fuzz/FuzzJWT/valid
// is signed with its private half, so the fuzzer starts from a token that
// passes every check.
const fuzzJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`

// FuzzJWT: whatever the token, LoginJWT never panics, and every failure is a
// classified authn error (a reason code for the client), never a raw parser
// error. Seeds: testdata/fuzz/FuzzJWT and below.
func FuzzJWT(f *testing.F) {
	for _, s := range []string{
		"", ".", "..", "a.b.c",
		"eyJhbGciOiJub25lIn0.eyJpc3MiOiJpIn0.",
		"eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ.eyJpc3MiOiJpIiwiZXhwIjo0MTAyNDQ0ODAwfQ.AAAA",
		"eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJpIn0.c2ln",
		"eyJhbGciOjF9.e30.",
	} {
		f.Add(s)
	}
	st := fuzzState{cfg: &fsmpb.AuthConfig{Name: "c", Type: "jwt", Issuer: "i", Algorithms: []string{"ES256", "RS256", "EdDSA"},
		Jwks: fuzzJWKS, BoundAudiences: []string{"writ"}, EvidenceClaims: []string{"repository", "x=/a/b"}}}
	if _, err := parseJWKS([]byte(fuzzJWKS)); err != nil {
		f.Fatal(err) // the seeds in testdata log in with this key: keep it usable
	}
	a := New(Config{})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, token string) {
		_, _, _, _ = PeekJWT(token)
		p, err := a.LoginJWT(context.Background(), st, JWTProof{Role: "r", Token: token}, now)
		if err != nil && Reason(err) == "" {
			t.Fatalf("unclassified error %v", err)
		}
		if err == nil && p.Identity == nil {
			t.Fatal("success without an identity")
		}
	})
}

// FuzzAuthConfig: an auth config decoded from any bytes (the log's protobuf
// form) is validated without panicking; JWKS and CA bundle parsers accept or
// reject any text without panicking, and a parsed JWKS holds only usable keys.
func FuzzAuthConfig(f *testing.F) {
	seed := func(c *fsmpb.AuthConfig) {
		b, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, c.GetJwks())
	}
	seed(&fsmpb.AuthConfig{Name: "gh", Type: "jwt", Issuer: "https://i", Algorithms: []string{"ES256"}, Jwks: fuzzJWKS, BoundAudiences: []string{"writ"},
		EvidenceClaims: []string{"ref", "ns=/kubernetes.io/namespace"}})
	seed(&fsmpb.AuthConfig{Name: "m", Type: "mtls", CaBundlePem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"})
	seed(&fsmpb.AuthConfig{Name: "k", Type: "jwt", Jwks: `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`})
	seed(&fsmpb.AuthConfig{Name: "o", Type: "jwt", Jwks: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`})
	a := New(Config{})
	f.Fuzz(func(t *testing.T, b []byte, jwks string) {
		if set, err := parseJWKS([]byte(jwks)); err == nil {
			for _, k := range set.keys {
				if err := usableKey(k.Key); err != nil || !k.IsPublic() {
					t.Fatalf("parsed an unusable key %v: %v", k.KeyID, err)
				}
			}
		}
		_, _, _ = ParseCABundle(jwks)
		var c fsmpb.AuthConfig
		if proto.Unmarshal(b, &c) != nil {
			return
		}
		// No I/O from fuzzed input: no file reads, no fetches.
		c.JwksFile, c.JwksUrl = "", ""
		_ = a.ValidateAuthConfig(context.Background(), &c)
	})
}
