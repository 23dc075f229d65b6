package authn

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// maxChainCerts bounds the certificates a client may present.
const maxChainCerts = 8

// MTLSProof is an mTLS login: the role, the certificates the client
// presented in the TLS handshake (leaf first, as crypto/tls gives them), and
// the caller's address. The TLS layer only requests a certificate; it is
// verified here, against the trust anchors of the role's auth configs.
type MTLSProof struct {
	Role   string
	Chain  []*x509.Certificate
	Source netip.Addr
}

type pool struct {
	cfg   *fsmpb.AuthConfig // the (immutable) record it was parsed from
	src   [32]byte
	certs *x509.CertPool
}

// verifiedChain is what a chain verification establishes, cached by the
// chain's bytes and the bundle: the window in which every certificate of
// the verified chain is valid, and the leaf's facts (they depend on the
// leaf alone), so a cached login formats no names and hashes nothing again.
type verifiedChain struct {
	notBefore, notAfter time.Time
	claims              Claims
	sid                 spiffeid.ID
	hasSID              bool
	fingerprint         string
	subject, issuer     string
}

// ParseCABundle parses PEM trust anchors: one or more CERTIFICATE blocks and
// nothing else. It never panics, whatever the bytes (FuzzAuthConfig).
func ParseCABundle(pemText string) (*x509.CertPool, int, error) {
	rest := []byte(pemText)
	p := x509.NewCertPool()
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, 0, fmt.Errorf("ca bundle: unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("ca bundle: certificate %d: %v", n, err)
		}
		p.AddCert(c)
		n++
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, 0, errors.New("ca bundle: trailing data that is not PEM")
	}
	if n == 0 {
		return nil, 0, errors.New("ca bundle: no certificate")
	}
	return p, n, nil
}

func (a *Authenticator) pool(c *fsmpb.AuthConfig) (*pool, error) {
	if v, ok := a.pools.Load(c.GetName()); ok && v.(*pool).cfg == c {
		return v.(*pool), nil
	}
	src := sha256.Sum256([]byte(c.GetCaBundlePem()))
	if v, ok := a.pools.Load(c.GetName()); ok && v.(*pool).src == src {
		return v.(*pool), nil
	}
	certs, _, err := ParseCABundle(c.GetCaBundlePem())
	if err != nil {
		return nil, err
	}
	p := &pool{cfg: c, src: src, certs: certs}
	a.pools.Store(c.GetName(), p)
	return p, nil
}

// LoginMTLS verifies a client certificate chain against the trust anchors
// of the role's mtls auth configs and returns the principal it proves: the
// role exists and allows mtls, the source is inside the role's CIDRs, a
// certificate was presented, the chain verifies (client-auth usage, valid
// at now) against one config, the leaf's SPIFFE ID (its URI SAN, read with
// go-spiffe) matches the role's patterns (when it has any), the role's
// bound claims match the certificate's fields, and the identity (fixed, or
// rendered from those fields) exists, is active and is in the role's
// environment. Verified chains are cached; the time window is re-checked
// on every login.
func (a *Authenticator) LoginMTLS(st RoleState, p MTLSProof, now time.Time) (*Principal, error) {
	role, err := loginRole(st, p.Role, MethodMTLS)
	if err != nil {
		return nil, err
	}
	if err := checkRoleSource(role, p.Source); err != nil {
		return nil, err
	}
	if len(p.Chain) == 0 {
		return nil, ErrNoClientCert
	}
	if len(p.Chain) > maxChainCerts {
		return nil, fmt.Errorf("%w: more than %d certificates", ErrUntrustedChain, maxChainCerts)
	}
	var cfg *fsmpb.AuthConfig
	var vc verifiedChain
	var lastErr error = fmt.Errorf("%w: role %q names no mtls auth config", ErrUntrustedChain, role.GetName())
	for _, c := range roleConfigs(st, role, MethodMTLS) {
		v, err := a.verifyChain(c, p.Chain, now)
		if err != nil {
			lastErr = err
			continue
		}
		cfg, vc = c, v
		break
	}
	if cfg == nil {
		return nil, lastErr
	}

	if err := matchSPIFFE(role, vc.sid, vc.hasSID); err != nil {
		return nil, err
	}
	if err := matchBoundClaims(vc.claims, role.GetBoundClaims(), "role "+strconv.Quote(role.GetName())); err != nil {
		return nil, err
	}
	ident, err := resolveIdentity(st, role, vc.claims)
	if err != nil {
		return nil, err
	}
	ev := map[string]any{
		EvidenceMethod:          MethodMTLS,
		EvidenceRole:            role.GetName(),
		EvidenceAuthConfig:      cfg.GetName(),
		EvidenceIssuer:          vc.issuer,
		EvidenceSubject:         vc.subject,
		EvidenceCertFingerprint: vc.fingerprint,
	}
	if vc.hasSID {
		ev[EvidenceSPIFFEID] = vc.sid.String()
		ev[EvidenceTrustDomain] = vc.sid.TrustDomain().Name()
	}
	if p.Source.IsValid() {
		ev[EvidenceSourceIP] = p.Source.Unmap().WithZone("").String()
	}
	return &Principal{Identity: ident, Role: role, Method: MethodMTLS, Evidence: ev}, nil
}

func (a *Authenticator) verifyChain(c *fsmpb.AuthConfig, chain []*x509.Certificate, now time.Time) (verifiedChain, error) {
	pl, err := a.pool(c)
	if err != nil {
		// Apply accepted the config, but this binary cannot parse it: fail
		// closed for this config only.
		return verifiedChain{}, fmt.Errorf("%w: auth config %q: %v", ErrUntrustedChain, c.GetName(), err)
	}
	parts := make([][]byte, 0, len(chain)+2)
	parts = append(parts, []byte(c.GetName()), pl.src[:])
	for _, cert := range chain {
		parts = append(parts, cert.Raw)
	}
	key := cacheKey(parts...)
	if v, ok := a.chains.get(key); ok {
		if now.Before(v.notBefore) || now.After(v.notAfter) {
			return verifiedChain{}, fmt.Errorf("%w: a certificate of the chain is expired or not yet valid", ErrUntrustedChain)
		}
		return v, nil
	}
	inter := x509.NewCertPool()
	for _, cert := range chain[1:] {
		inter.AddCert(cert)
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         pl.certs,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return verifiedChain{}, fmt.Errorf("%w: auth config %q: %v", ErrUntrustedChain, c.GetName(), err)
	}
	leaf := chain[0]
	fp := sha256.Sum256(leaf.Raw)
	v := verifiedChain{
		notBefore: chains[0][0].NotBefore, notAfter: chains[0][0].NotAfter,
		claims: CertClaims(leaf), fingerprint: hex.EncodeToString(fp[:]),
		subject: leaf.Subject.String(), issuer: leaf.Issuer.String(),
	}
	if sid, err := x509svid.IDFromCert(leaf); err == nil {
		v.sid, v.hasSID = sid, true
	}
	for _, cert := range chains[0][1:] {
		if cert.NotBefore.After(v.notBefore) {
			v.notBefore = cert.NotBefore
		}
		if cert.NotAfter.Before(v.notAfter) {
			v.notAfter = cert.NotAfter
		}
	}
	a.chains.put(key, v)
	return v, nil
}

// CertClaims are the fields of a client certificate that bound claims and
// identity templates read: spiffe_id, trust_domain and spiffe_path (from a
// SPIFFE URI SAN), subject and issuer (RFC 2253 strings), subject_cn,
// subject_ou and dns_names (sets), serial (decimal).
func CertClaims(leaf *x509.Certificate) Claims {
	c := Claims{
		"subject": leaf.Subject.String(),
		"issuer":  leaf.Issuer.String(),
		"serial":  leaf.SerialNumber.String(),
	}
	if cn := leaf.Subject.CommonName; cn != "" {
		c["subject_cn"] = cn
	}
	if ou := leaf.Subject.OrganizationalUnit; len(ou) > 0 {
		c["subject_ou"] = strSet(ou)
	}
	if len(leaf.DNSNames) > 0 {
		c["dns_names"] = strSet(leaf.DNSNames)
	}
	if id, err := x509svid.IDFromCert(leaf); err == nil {
		addSPIFFEVars(c, id)
	}
	return c
}

func strSet(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// ParseSPIFFEID parses a SPIFFE ID with go-spiffe.
func ParseSPIFFEID(s string) (spiffeid.ID, error) { return spiffeid.FromString(s) }
