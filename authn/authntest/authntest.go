// Package authntest mints what authn verifies, for tests: JWT issuers with
// generated keys (RS256, ES256, EdDSA) and their JWKS, forged tokens
// (alg none, HMAC keyed with a public key), and X.509 CAs issuing client
// certificates with SPIFFE URI SANs. Nothing here is for production use.
package authntest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer signs JWTs with one generated key.
type Issuer struct {
	URL string // the "iss" Mint puts in tokens unless claims say otherwise
	Alg jose.SignatureAlgorithm
	Kid string
	key crypto.Signer
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaErr  error
)

// NewIssuer generates a key for alg (RS256, ES256 or EdDSA). RSA keys are
// generated once per test binary and shared (generation is slow).
func NewIssuer(t testing.TB, iss string, alg jose.SignatureAlgorithm, kid string) *Issuer {
	t.Helper()
	var key crypto.Signer
	var err error
	switch alg {
	case jose.RS256:
		rsaOnce.Do(func() { rsaKey, rsaErr = rsa.GenerateKey(rand.Reader, 2048) })
		key, err = rsaKey, rsaErr
	case jose.ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("authntest: no key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &Issuer{URL: iss, Alg: alg, Kid: kid, key: key}
}

// Public is the issuer's public key.
func (i *Issuer) Public() crypto.PublicKey { return i.key.Public() }

// JWK is the issuer's public key as a JWK.
func (i *Issuer) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: i.key.Public(), KeyID: i.Kid, Algorithm: string(i.Alg), Use: "sig"}
}

// JWKS renders a key set holding the public keys of issuers.
func JWKS(t testing.TB, issuers ...*Issuer) string {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, i := range issuers {
		set.Keys = append(set.Keys, i.JWK())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Mint signs claims. iss defaults to the issuer's URL; pass "iss": nil to
// leave it out. Times may be time.Time (rendered as NumericDate).
func (i *Issuer) Mint(t testing.TB, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if i.Kid != "" {
		opts = opts.WithHeader("kid", i.Kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: i.Alg, Key: i.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(i.claims(claims)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (i *Issuer) claims(in map[string]any) map[string]any {
	out := map[string]any{"iss": i.URL}
	for k, v := range in {
		if v == nil {
			delete(out, k)
			continue
		}
		if tm, ok := v.(time.Time); ok {
			v = tm.Unix()
		}
		out[k] = v
	}
	return out
}

func segment(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// AlgNone forges an unsigned token ({"alg":"none"}) with the issuer's claims.
func (i *Issuer) AlgNone(claims map[string]any) string {
	return segment(map[string]any{"alg": "none", "typ": "JWT", "kid": i.Kid}) + "." + segment(i.claims(claims)) + "."
}

// HS256With forges the classic algorithm-confusion token: HS256 keyed with
// the bytes of the issuer's public key (PKIX DER), as a verifier that let
// the token pick the algorithm would compute it.
func (i *Issuer) HS256With(t testing.TB, claims map[string]any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(i.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	signing := segment(map[string]any{"alg": "HS256", "typ": "JWT", "kid": i.Kid}) + "." + segment(i.claims(claims))
	m := hmac.New(sha256.New, der)
	m.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CA is a certificate authority with a generated ECDSA P-256 key.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial = struct {
	sync.Mutex
	n int64
}{n: 1}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

// NewCA makes a self-signed root CA valid from an hour ago for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"writ test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, key: key}
}

// PEM is the CA certificate in PEM.
func (ca *CA) PEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}))
}

// Leaf describes a client certificate.
type Leaf struct {
	SPIFFEID  string // URI SAN, e.g. spiffe://example.org/ns/prod/sa/api
	CN        string
	DNSNames  []string
	NotBefore time.Time // default an hour ago
	NotAfter  time.Time // default in an hour
	// ServerAuth issues a server certificate (for 127.0.0.1) instead.
	ServerAuth bool
}

// Issue signs a leaf certificate and returns it with its key as a
// tls.Certificate (Leaf set).
func (ca *CA) Issue(t testing.TB, l Leaf) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if l.NotBefore.IsZero() {
		l.NotBefore = time.Now().Add(-time.Hour)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = time.Now().Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: l.CN},
		NotBefore:    l.NotBefore,
		NotAfter:     l.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     l.DNSNames,
	}
	if l.ServerAuth {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = append(tmpl.IPAddresses, []byte{127, 0, 0, 1})
		tmpl.DNSNames = append(tmpl.DNSNames, "localhost")
	}
	if l.SPIFFEID != "" {
		u, err := url.Parse(l.SPIFFEID)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

// CertPEM and KeyPEM render a tls.Certificate for files (writ server
// --tls-cert/--tls-key, writ --client-cert/--client-key).
func CertPEM(c tls.Certificate) string {
	var out []byte
	for _, der := range c.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return string(out)
}

// KeyPEM renders the certificate's private key (PKCS #8).
func KeyPEM(t testing.TB, c tls.Certificate) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}
