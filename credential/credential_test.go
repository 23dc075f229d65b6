package credential_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

func TestNewSigningKey(t *testing.T) {
	t.Parallel()
	k := testKey(t, 1)
	if len(k.GetEd25519Seed()) != 32 {
		t.Fatalf("seed is %d bytes", len(k.GetEd25519Seed()))
	}
	if k.GetCreatedUnixNano() != t0.UnixNano() {
		t.Errorf("created = %d, want %d", k.GetCreatedUnixNano(), t0.UnixNano())
	}
	pub := privKey(k).Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	if want := base64.RawURLEncoding.EncodeToString(sum[:8]); k.GetKid() != want {
		t.Errorf("kid = %q, want %q", k.GetKid(), want)
	}
	if k2 := testKey(t, 2); k2.GetKid() == k.GetKid() {
		t.Errorf("two seeds share kid %q", k.GetKid())
	}
	if _, err := credential.NewSigningKey(bytes.NewReader(make([]byte, 31)), t0); err == nil {
		t.Error("short randomness: no error")
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	want := testClaims()
	tok := mint(t, key, want)

	p := parts(t, tok)
	hdrJSON, err := base64.RawURLEncoding.DecodeString(p[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr map[string]any
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"alg": "EdDSA", "kid": key.GetKid(), "typ": "JWT"}, hdr); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}

	v := credential.NewVerifier(credential.VerifierConfig{})
	got, err := v.Verify(tok, ring(key), t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}

	// Minimal claims survive too, and sub-second times are truncated.
	min := credential.Claims{Subject: "s", ID: "l", Expiry: t0.Add(time.Hour + 900*time.Millisecond)}
	got, err = v.Verify(mint(t, key, min), ring(key), t0)
	if err != nil {
		t.Fatal(err)
	}
	min.Expiry = t0.Add(time.Hour)
	if diff := cmp.Diff(&min, got); diff != "" {
		t.Errorf("minimal claims (-want +got):\n%s", diff)
	}
}

func TestSignerReuse(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	s, err := credential.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != key.GetKid() {
		t.Errorf("KeyID = %q", s.KeyID())
	}
	tok, err := s.Mint(testClaims())
	if err != nil {
		t.Fatal(err)
	}
	// Ed25519 is deterministic: the Signer and Mint produce the same token.
	if want := mint(t, key, testClaims()); tok != want {
		t.Errorf("Signer.Mint and Mint disagree:\n%s\n%s", tok, want)
	}
}

// TestMintMatchesGoJose pins the hand-written compact serialisation to
// go-jose's: with the same header and payload, Ed25519 makes the same
// signature, so a token that differs in any byte would show here.
func TestMintMatchesGoJose(t *testing.T) {
	t.Parallel()
	minimal := credential.Claims{Subject: "s", ID: "l_1", Expiry: t0.Add(time.Second)}
	odd := testClaims()
	odd.Subject, odd.Owner = "agent \"q\" <&> \u2028", "team/ünïcode"
	odd.Scope.Resources = append(odd.Scope.Resources, credential.ResourceRef{Type: "Doc", ID: strings.Repeat("x", 500)})
	for name, c := range map[string]credential.Claims{"full": testClaims(), "minimal": minimal, "escaping": odd} {
		for _, b := range []byte{1, 2, 0xff} {
			key := testKey(t, b)
			tok := mint(t, key, c)
			payload, err := base64.RawURLEncoding.DecodeString(parts(t, tok)[1])
			if err != nil {
				t.Fatal(err)
			}
			if want := signRaw(t, credential.Alg, privKey(key), key.GetKid(), payload); tok != want {
				t.Errorf("%s, key %d: Mint and go-jose disagree:\n%s\n%s", name, b, tok, want)
			}
			if _, err := credential.NewVerifier(credential.VerifierConfig{CacheSize: -1}).Verify(tok, ring(key), t0); err != nil {
				t.Errorf("%s, key %d: %v", name, b, err)
			}
		}
	}
}

func TestMintRejects(t *testing.T) {
	t.Parallel()
	good := testKey(t, 1)
	tests := []struct {
		name   string
		key    *fsmpb.SigningKey
		mutate func(*credential.Claims)
		want   error
	}{
		{"no kid", &fsmpb.SigningKey{Ed25519Seed: good.GetEd25519Seed()}, nil, credential.ErrInvalidKey},
		{"short seed", &fsmpb.SigningKey{Kid: "k", Ed25519Seed: []byte{1, 2, 3}}, nil, credential.ErrInvalidKey},
		{"nil key", nil, nil, credential.ErrInvalidKey},
		{"no subject", good, func(c *credential.Claims) { c.Subject = "" }, credential.ErrInvalidClaims},
		{"no id", good, func(c *credential.Claims) { c.ID = "" }, credential.ErrInvalidClaims},
		{"no expiry", good, func(c *credential.Claims) { c.Expiry = time.Time{} }, credential.ErrInvalidClaims},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := testClaims()
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			if _, err := credential.Mint(tt.key, c); !errors.Is(err, tt.want) {
				t.Errorf("Mint error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyErrors(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	other := testKey(t, 2)
	keys := ring(key)
	good := mint(t, key, testClaims())
	p := parts(t, good)

	// The payload with one claim changed, keeping the original signature.
	var payload map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(p[1])
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatal(err)
	}
	payload["sub"] = "root"
	tampered := p[0] + "." + b64(mustJSON(t, payload)) + "." + p[2]

	noneHdr := b64([]byte(`{"alg":"none","kid":"` + key.GetKid() + `","typ":"JWT"}`))
	hsHdr := b64([]byte(`{"alg":"HS256","kid":"` + key.GetKid() + `","typ":"JWT"}`))
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	claimsJSON := func(m map[string]any) []byte { return mustJSON(t, m) }
	valid := map[string]any{"sub": "s", "jti": "l", "exp": t0.Add(time.Hour).Unix()}

	tests := []struct {
		name  string
		token string
		keys  credential.KeySource
		now   time.Time
		want  error
	}{
		{"garbage", "garbage", keys, t0, credential.ErrMalformed},
		{"empty", "", keys, t0, credential.ErrMalformed},
		{"two parts", p[0] + "." + p[1], keys, t0, credential.ErrMalformed},
		{"four parts", good + ".x", keys, t0, credential.ErrMalformed},
		{"bad base64 header", "!!!." + p[1] + "." + p[2], keys, t0, credential.ErrMalformed},
		{"bad base64 payload", p[0] + ".***." + p[2], keys, t0, credential.ErrMalformed},
		{"header not json", b64([]byte("{")) + "." + p[1] + "." + p[2], keys, t0, credential.ErrMalformed},
		{"too long", p[0] + "." + strings.Repeat("A", credential.MaxTokenSize) + "." + p[2], keys, t0, credential.ErrMalformed},
		{"alg none", noneHdr + "." + p[1] + ".", keys, t0, credential.ErrMalformed},
		{"alg none with signature", noneHdr + "." + p[1] + "." + p[2], keys, t0, credential.ErrMalformed},
		{"alg HS256 header", hsHdr + "." + p[1] + "." + p[2], keys, t0, credential.ErrMalformed},
		// The classic confusion attack: HMAC keyed with something the verifier knows.
		{"HS256 signed with seed", signRaw(t, jose.HS256, key.GetEd25519Seed(), key.GetKid(), []byte(p[1])), keys, t0, credential.ErrMalformed},
		{"ES256", signRaw(t, jose.ES256, ecKey, key.GetKid(), claimsJSON(valid)), keys, t0, credential.ErrMalformed},
		{"JSON serialization", `{"payload":"` + p[1] + `","protected":"` + p[0] + `","signature":"` + p[2] + `"}`, keys, t0, credential.ErrMalformed},
		{"no kid", signRaw(t, jose.EdDSA, privKey(key), "", claimsJSON(valid)), keys, t0, credential.ErrMalformed},
		{"unknown kid", mint(t, other, testClaims()), keys, t0, credential.ErrUnknownKey},
		{"nil key source", good, nil, t0, credential.ErrUnknownKey},
		{"keyring entry with bad seed", good, keyring{key.GetKid(): {Kid: key.GetKid(), Ed25519Seed: []byte{1}}}, t0, credential.ErrUnknownKey},
		{"forged with another key, same kid", signRaw(t, jose.EdDSA, privKey(other), key.GetKid(), raw), keys, t0, credential.ErrBadSignature},
		{"tampered payload", tampered, keys, t0, credential.ErrBadSignature},
		{"signature truncated", p[0] + "." + p[1] + "." + p[2][:20], keys, t0, credential.ErrBadSignature},
		{"payload not json", signRaw(t, jose.EdDSA, privKey(key), key.GetKid(), []byte("not json")), keys, t0, credential.ErrMalformed},
		{"no exp", signRaw(t, jose.EdDSA, privKey(key), key.GetKid(), claimsJSON(map[string]any{"sub": "s", "jti": "l"})), keys, t0, credential.ErrMalformed},
		{"exp is a string", signRaw(t, jose.EdDSA, privKey(key), key.GetKid(), claimsJSON(map[string]any{"sub": "s", "exp": "soon"})), keys, t0, credential.ErrMalformed},
		{"expired", good, keys, t0.Add(11 * time.Minute), credential.ErrExpired},
		{"at exp exactly", good, keys, t0.Add(10 * time.Minute), credential.ErrExpired},
		{"nbf in future", good, keys, t0.Add(-time.Second), credential.ErrNotYetValid},
		{"iat in future", signRaw(t, jose.EdDSA, privKey(key), key.GetKid(), claimsJSON(map[string]any{"sub": "s", "exp": t0.Add(time.Hour).Unix(), "iat": t0.Add(time.Minute).Unix()})), keys, t0, credential.ErrNotYetValid},
	}
	sentinels := []error{credential.ErrMalformed, credential.ErrUnknownKey, credential.ErrBadSignature, credential.ErrExpired, credential.ErrNotYetValid}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := credential.NewVerifier(credential.VerifierConfig{})
			c, err := v.Verify(tt.token, tt.keys, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			if c != nil {
				t.Errorf("claims returned with error: %+v", c)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("error %v is also %v", err, s)
				}
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	tok := mint(t, key, testClaims())
	v := credential.NewVerifier(credential.VerifierConfig{Leeway: 30 * time.Second})
	for _, now := range []time.Time{t0.Add(-29 * time.Second), t0.Add(10*time.Minute + 29*time.Second)} {
		if _, err := v.Verify(tok, ring(key), now); err != nil {
			t.Errorf("at %s within leeway: %v", now, err)
		}
	}
	if _, err := v.Verify(tok, ring(key), t0.Add(10*time.Minute+30*time.Second)); !errors.Is(err, credential.ErrExpired) {
		t.Errorf("past leeway: %v", err)
	}
	if _, err := v.Verify(tok, ring(key), t0.Add(-31*time.Second)); !errors.Is(err, credential.ErrNotYetValid) {
		t.Errorf("before leeway: %v", err)
	}
}

func TestVerifyCache(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	tok := mint(t, key, testClaims())

	t.Run("second verify is a hit", func(t *testing.T) {
		t.Parallel()
		v := credential.NewVerifier(credential.VerifierConfig{})
		for i := range 3 {
			if _, err := v.Verify(tok, ring(key), t0.Add(time.Minute)); err != nil {
				t.Fatalf("verify %d: %v", i, err)
			}
		}
		if got, want := v.Stats(), (credential.Stats{CacheHits: 2, SignatureChecks: 1}); got != want {
			t.Errorf("stats = %+v, want %+v", got, want)
		}
	})
	t.Run("expiry enforced on a cached entry", func(t *testing.T) {
		t.Parallel()
		v := credential.NewVerifier(credential.VerifierConfig{})
		if _, err := v.Verify(tok, ring(key), t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok, ring(key), t0.Add(10*time.Minute)); !errors.Is(err, credential.ErrExpired) {
			t.Fatalf("cached token past exp: %v", err)
		}
		if _, err := v.Verify(tok, ring(key), t0.Add(-time.Minute)); !errors.Is(err, credential.ErrNotYetValid) {
			t.Fatalf("cached token before nbf: %v", err)
		}
		if got := v.Stats(); got.SignatureChecks != 1 || got.CacheHits != 2 {
			t.Errorf("stats = %+v: the time checks should have been served from the cache", got)
		}
	})
	t.Run("callers get their own copy", func(t *testing.T) {
		t.Parallel()
		v := credential.NewVerifier(credential.VerifierConfig{})
		c1, err := v.Verify(tok, ring(key), t0)
		if err != nil {
			t.Fatal(err)
		}
		c1.Subject = "changed"
		c2, err := v.Verify(tok, ring(key), t0)
		if err != nil {
			t.Fatal(err)
		}
		if c2.Subject != "backup-job" {
			t.Errorf("cached claims were modified through a returned pointer: %q", c2.Subject)
		}
	})
	t.Run("removed key invalidates cached tokens", func(t *testing.T) {
		t.Parallel()
		v := credential.NewVerifier(credential.VerifierConfig{})
		if _, err := v.Verify(tok, ring(key), t0); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok, ring(), t0); !errors.Is(err, credential.ErrUnknownKey) {
			t.Fatalf("after key removal: %v", err)
		}
		if n := credential.CacheLen(v); n != 0 {
			t.Errorf("cache holds %d entries after invalidation", n)
		}
	})
	t.Run("kid reused for another seed", func(t *testing.T) {
		t.Parallel()
		v := credential.NewVerifier(credential.VerifierConfig{})
		if _, err := v.Verify(tok, ring(key), t0); err != nil {
			t.Fatal(err)
		}
		impostor := &fsmpb.SigningKey{Kid: key.GetKid(), Ed25519Seed: testKey(t, 9).GetEd25519Seed()}
		if _, err := v.Verify(tok, ring(impostor), t0); !errors.Is(err, credential.ErrBadSignature) {
			t.Fatalf("kid now names another key: %v", err)
		}
	})
	t.Run("expired tokens are not cached", func(t *testing.T) {
		t.Parallel()
		v := credential.NewVerifier(credential.VerifierConfig{})
		if _, err := v.Verify(tok, ring(key), t0.Add(time.Hour)); !errors.Is(err, credential.ErrExpired) {
			t.Fatal(err)
		}
		if n := credential.CacheLen(v); n != 0 {
			t.Errorf("cache holds %d entries", n)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		t.Parallel()
		v := credential.NewVerifier(credential.VerifierConfig{CacheSize: -1})
		for range 2 {
			if _, err := v.Verify(tok, ring(key), t0); err != nil {
				t.Fatal(err)
			}
		}
		if got := v.Stats(); got.SignatureChecks != 2 || got.CacheHits != 0 {
			t.Errorf("stats = %+v", got)
		}
	})
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	s, err := credential.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	const size = 16
	v := credential.NewVerifier(credential.VerifierConfig{CacheSize: size})
	toks := make([]string, 100)
	for i := range toks {
		c := testClaims()
		c.ID = fmt.Sprintf("l_%d", i)
		if toks[i], err = s.Mint(c); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(toks[i], ring(key), t0); err != nil {
			t.Fatal(err)
		}
		if n := credential.CacheLen(v); n > size {
			t.Fatalf("after %d tokens the cache holds %d > %d", i+1, n, size)
		}
	}
	// The newest token is still cached; a token kept hot survives rotations.
	before := v.Stats().SignatureChecks
	if _, err := v.Verify(toks[len(toks)-1], ring(key), t0); err != nil {
		t.Fatal(err)
	}
	if v.Stats().SignatureChecks != before {
		t.Error("the most recent token was evicted")
	}
}

func TestVerifyConcurrent(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	s, err := credential.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]string, 32)
	for i := range toks {
		c := testClaims()
		c.ID = fmt.Sprintf("l_%d", i)
		if toks[i], err = s.Mint(c); err != nil {
			t.Fatal(err)
		}
	}
	v := credential.NewVerifier(credential.VerifierConfig{CacheSize: 8})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				tok := toks[(g*7+i)%len(toks)]
				c, err := v.Verify(tok, ring(key), t0)
				if err != nil {
					t.Error(err)
					return
				}
				if c.Subject != "backup-job" {
					t.Errorf("subject %q", c.Subject)
					return
				}
			}
		})
	}
	wg.Wait()
	st := v.Stats()
	if st.CacheHits+st.SignatureChecks != 8*200 {
		t.Errorf("stats %+v do not add up to %d calls", st, 8*200)
	}
}

// TestJWKSOfflineVerification verifies a minted credential the way a
// downstream service would: plain go-jose, keys from the published JWKS.
func TestJWKSOfflineVerification(t *testing.T) {
	t.Parallel()
	key, old := testKey(t, 1), testKey(t, 2)
	body, err := credential.PublicJWKS([]*fsmpb.SigningKey{key, old})
	if err != nil {
		t.Fatal(err)
	}

	// The document has exactly the public members, and no seed.
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 2 {
		t.Fatalf("jwks has %d keys", len(doc.Keys))
	}
	pub := privKey(key).Public().(ed25519.PublicKey)
	want := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(pub), "kid": key.GetKid(), "alg": "EdDSA", "use": "sig"}
	if diff := cmp.Diff(want, doc.Keys[0]); diff != "" {
		t.Errorf("jwk (-want +got):\n%s", diff)
	}

	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	tok := mint(t, key, testClaims())
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	jwks := set.Key(parsed.Headers[0].KeyID)
	if len(jwks) != 1 {
		t.Fatalf("kid %q matches %d keys", parsed.Headers[0].KeyID, len(jwks))
	}
	var std jwt.Claims
	var priv struct {
		Role  string `json:"role"`
		Scope struct {
			Actions []string `json:"actions"`
		} `json:"scope"`
		PolicyVersion uint64 `json:"policy_version"`
	}
	if err := parsed.Claims(jwks[0].Key, &std, &priv); err != nil {
		t.Fatalf("offline verification: %v", err)
	}
	if err := std.Validate(jwt.Expected{Issuer: "writ", AnyAudience: []string{"writ"}, Time: t0.Add(time.Minute)}); err != nil {
		t.Errorf("standard claims: %v", err)
	}
	if std.Subject != "backup-job" || std.ID != "l_0123456789abcdef" || priv.Role != "backup" || priv.PolicyVersion != 7 ||
		len(priv.Scope.Actions) != 1 || priv.Scope.Actions[0] != "s3:PutObject" {
		t.Errorf("claims: %+v %+v", std, priv)
	}
	// The whole set works as a verification key too (go-jose picks by kid).
	if err := parsed.Claims(&set, &std); err != nil {
		t.Errorf("verification with the key set: %v", err)
	}
	// A key not in the set does not verify.
	if err := parsed.Claims(jose.JSONWebKeySet{Keys: set.Keys[1:]}.Keys[0].Key, &std); err == nil {
		t.Error("verified with the wrong key")
	}

	empty, err := credential.PublicJWKS(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(empty) != `{"keys":[]}` {
		t.Errorf("empty jwks = %s", empty)
	}
	if _, err := credential.PublicJWKS([]*fsmpb.SigningKey{{Kid: "x"}}); !errors.Is(err, credential.ErrInvalidKey) {
		t.Errorf("bad key: %v", err)
	}
}
