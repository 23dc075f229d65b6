package credential

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Alg is the only JWS algorithm Writ signs with and accepts.
const Alg = jose.EdDSA

// NewSigningKey draws a fresh Ed25519 seed from rand and names it: the kid is
// the unpadded base64url encoding of the first 8 bytes of SHA-256 over the
// public key, so it is stable, short, and says nothing about the seed. The
// record is meant to be replicated through Raft (Bootstrap, PutSigningKey):
// it holds the private seed.
func NewSigningKey(rand io.Reader, now time.Time) (*fsmpb.SigningKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("credential: reading key seed: %w", err)
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	return &fsmpb.SigningKey{
		Kid:             KeyID(pub),
		Ed25519Seed:     seed,
		CreatedUnixNano: now.UnixNano(),
	}, nil
}

// KeyID names an Ed25519 public key: base64url(SHA-256(pub)[:8]).
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:8])
}

// privateKey validates a signing key record and expands its seed.
func privateKey(key *fsmpb.SigningKey) (ed25519.PrivateKey, error) {
	if key.GetKid() == "" {
		return nil, fmt.Errorf("%w: no kid", ErrInvalidKey)
	}
	if n := len(key.GetEd25519Seed()); n != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: kid %q: seed is %d bytes, want %d", ErrInvalidKey, key.GetKid(), n, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(key.GetEd25519Seed()), nil
}

// Signer mints credentials with one signing key. Expanding an Ed25519 seed
// costs about as much as a signature, so a caller that mints often should
// keep a Signer per kid rather than call Mint. A Signer is safe for
// concurrent use.
//
// It writes the compact serialisation itself (RFC 7515 §7.1): the protected
// header never changes for a key, so it is encoded once here, and each Mint
// only encodes the claims and signs. The bytes are the same as go-jose's
// signer produces for this header (Ed25519 is deterministic); the tests
// check both that and that go-jose verifies the result.
type Signer struct {
	kid    string
	priv   ed25519.PrivateKey
	header string // base64url(protected header) + "."
}

// NewSigner expands key into a Signer.
func NewSigner(key *fsmpb.SigningKey) (*Signer, error) {
	priv, err := privateKey(key)
	if err != nil {
		return nil, err
	}
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{string(Alg), key.GetKid(), "JWT"})
	if err != nil {
		return nil, fmt.Errorf("credential: encoding header: %w", err)
	}
	return &Signer{kid: key.GetKid(), priv: priv, header: base64.RawURLEncoding.EncodeToString(h) + "."}, nil
}

// KeyID returns the kid the Signer puts in every header.
func (s *Signer) KeyID() string { return s.kid }

// Mint signs c as a compact JWS with header {"alg":"EdDSA","kid":...,"typ":"JWT"}.
// Subject, ID and Expiry are required: Writ never issues a credential that
// names no identity, no lease, or does not expire.
func (s *Signer) Mint(c Claims) (string, error) {
	switch {
	case c.Subject == "":
		return "", fmt.Errorf("%w: no subject", ErrInvalidClaims)
	case c.ID == "":
		return "", fmt.Errorf("%w: no id", ErrInvalidClaims)
	case c.Expiry.IsZero():
		return "", fmt.Errorf("%w: no expiry", ErrInvalidClaims)
	}
	// jwt.Signed(...).Claims(...) would marshal the claims, decode them into
	// a map and marshal again; signing the payload directly costs a third
	// less and produces the same token.
	payload, err := json.Marshal(toWire(&c))
	if err != nil {
		return "", fmt.Errorf("credential: encoding claims: %w", err)
	}
	enc := base64.RawURLEncoding
	// header "." payload "." signature, in one allocation.
	buf := make([]byte, 0, len(s.header)+enc.EncodedLen(len(payload))+1+enc.EncodedLen(ed25519.SignatureSize))
	buf = append(buf, s.header...)
	buf = enc.AppendEncode(buf, payload)
	sig := ed25519.Sign(s.priv, buf)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}

// Mint signs c with key. It expands the seed on every call; see Signer.
func Mint(key *fsmpb.SigningKey, c Claims) (string, error) {
	s, err := NewSigner(key)
	if err != nil {
		return "", err
	}
	return s.Mint(c)
}

// PublicJWKS renders the public halves of keys as a JWK Set (RFC 7517):
// {"keys":[{"kty":"OKP","crv":"Ed25519","x":...,"kid":...,"alg":"EdDSA","use":"sig"}]}.
// This is what /.well-known/jwks.json serves so that downstream services
// verify credentials offline. It never contains a seed.
func PublicJWKS(keys []*fsmpb.SigningKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		priv, err := privateKey(k)
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       priv.Public(),
			KeyID:     k.GetKid(),
			Algorithm: string(Alg),
			Use:       "sig",
		})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("credential: encoding JWKS: %w", err)
	}
	return b, nil
}
