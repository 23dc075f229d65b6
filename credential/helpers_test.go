package credential_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

// t0 is second-aligned: credential times are NumericDates.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// keyring is a KeySource over a map.
type keyring map[string]*fsmpb.SigningKey

func (k keyring) SigningKey(kid string) (*fsmpb.SigningKey, bool) {
	key, ok := k[kid]
	return key, ok
}

func ring(keys ...*fsmpb.SigningKey) keyring {
	r := keyring{}
	for _, k := range keys {
		r[k.GetKid()] = k
	}
	return r
}

// testKey derives a deterministic signing key from one byte.
func testKey(t testing.TB, b byte) *fsmpb.SigningKey {
	t.Helper()
	k, err := credential.NewSigningKey(bytes.NewReader(bytes.Repeat([]byte{b}, 32)), t0)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testClaims() credential.Claims {
	return credential.Claims{
		Issuer:        "writ",
		Subject:       "backup-job",
		Audience:      []string{"writ"},
		IssuedAt:      t0,
		NotBefore:     t0,
		Expiry:        t0.Add(10 * time.Minute),
		ID:            "l_0123456789abcdef",
		Role:          "backup",
		Owner:         "team-storage",
		Environment:   "prod",
		Parent:        "l_parent",
		Scope:         credential.Scope{Actions: []string{"s3:PutObject"}, Resources: []credential.ResourceRef{{Type: "Bucket", ID: "backups"}}},
		PolicySet:     "prod",
		PolicyVersion: 7,
	}
}

func mint(t testing.TB, key *fsmpb.SigningKey, c credential.Claims) string {
	t.Helper()
	tok, err := credential.Mint(key, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signRaw signs payload with go-jose directly, for tokens Mint refuses to make.
func signRaw(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, payload []byte) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func privKey(k *fsmpb.SigningKey) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(k.GetEd25519Seed())
}

// parts splits a compact JWS.
func parts(t testing.TB, tok string) []string {
	t.Helper()
	p := strings.Split(tok, ".")
	if len(p) != 3 {
		t.Fatalf("token has %d parts", len(p))
	}
	return p
}
