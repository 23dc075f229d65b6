package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// MaxTokenBytes bounds a JWT proof.
const MaxTokenBytes = 16 << 10

// maxKeylessTries bounds the keys tried for a token without a key id.
const maxKeylessTries = 4

// JWTProof is a JWT login: the role to log in through, the token (a
// Kubernetes service-account token, a CI OIDC token, a SPIFFE JWT-SVID...),
// and the caller's address.
type JWTProof struct {
	Role   string
	Token  string
	Source netip.Addr
}

// jwtHeader is what a login reads before verifying: the protected header's
// alg and kid, and the payload's iss to pick the auth config.
type jwtHeader struct {
	alg, kid, iss string
}

// PeekJWT decodes a compact JWS's header and payload without verifying
// anything: the alg, the key id and the issuer. It fails with
// ErrMalformedToken on anything that is not three base64url parts with JSON
// objects in the first two, and never panics, whatever the input (FuzzJWT).
func PeekJWT(token string) (alg, kid, iss string, err error) {
	h, err := peekJWT(token)
	return h.alg, h.kid, h.iss, err
}

func peekJWT(token string) (jwtHeader, error) {
	if token == "" || len(token) > MaxTokenBytes {
		return jwtHeader{}, fmt.Errorf("%w: empty or longer than %d bytes", ErrMalformedToken, MaxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return jwtHeader{}, fmt.Errorf("%w: want three dot-separated parts, got %d", ErrMalformedToken, len(parts))
	}
	var hdr struct {
		Alg any `json:"alg"`
		Kid any `json:"kid"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return jwtHeader{}, fmt.Errorf("%w: header: %v", ErrMalformedToken, err)
	}
	var payload struct {
		Iss any `json:"iss"`
	}
	if err := decodeSegment(parts[1], &payload); err != nil {
		return jwtHeader{}, fmt.Errorf("%w: payload: %v", ErrMalformedToken, err)
	}
	alg, okA := hdr.Alg.(string)
	kid, okK := hdr.Kid.(string)
	iss, okI := payload.Iss.(string)
	if !okA || (hdr.Kid != nil && !okK) || (payload.Iss != nil && !okI) {
		return jwtHeader{}, fmt.Errorf("%w: alg, kid and iss must be strings", ErrMalformedToken)
	}
	return jwtHeader{alg: alg, kid: kid, iss: iss}, nil
}

func decodeSegment(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// verifiedToken is what a good signature establishes, cached by token hash,
// auth config and key set generation.
type verifiedToken struct {
	claims        Claims
	iss, sub      string
	aud           []string
	exp, nbf, iat *jwt.NumericDate
}

// LoginJWT verifies a JWT against the auth configs the role names and
// returns the principal it proves. In order: the role exists and allows
// jwt, the source is inside the role's CIDRs, the token is well formed, an
// auth config of the role has the token's issuer, its algorithm is accepted
// (alg none and HMAC never are), the key id is in the config's keys (a
// JWKS file or URL is re-read once when it is not) and the signature
// verifies, exp/nbf/iat hold within the leeway, the audience is bound, the
// config's and the role's bound claims match, the subject matches the
// role's SPIFFE patterns (when it has any), and the identity (fixed, or
// rendered from the claims) exists, is active and is in the role's
// environment. Failures are *Error sentinels; nothing is written.
//
// ctx bounds a key load, which happens on first use of a file or URL
// source and when a token names an unknown key id.
func (a *Authenticator) LoginJWT(ctx context.Context, st RoleState, p JWTProof, now time.Time) (*Principal, error) {
	role, err := loginRole(st, p.Role, MethodJWT)
	if err != nil {
		return nil, err
	}
	if err := checkRoleSource(role, p.Source); err != nil {
		return nil, err
	}
	if p.Token == "" || len(p.Token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: empty or longer than %d bytes", ErrMalformedToken, MaxTokenBytes)
	}
	// One hash of the token keys both caches: the decoded header (so a
	// repeated token is not base64- and JSON-decoded again) and, per auth
	// config and key set, the verified signature.
	sum := sha256.Sum256([]byte(p.Token))
	hdr, ok := a.headers.get(sum)
	if !ok {
		var err error
		if hdr, err = peekJWT(p.Token); err != nil {
			return nil, err
		}
		a.headers.put(sum, hdr)
	}
	var configs []*fsmpb.AuthConfig
	for _, c := range roleConfigs(st, role, MethodJWT) {
		if c.GetIssuer() == hdr.iss || c.GetIssuer() == "" {
			configs = append(configs, c)
		}
	}
	if len(configs) == 0 {
		return nil, fmt.Errorf("%w: role %q accepts no token from issuer %q", ErrWrongIssuer, role.GetName(), hdr.iss)
	}
	var first error
	for _, c := range configs {
		pr, err := a.loginJWTConfig(ctx, st, role, c, p, hdr, sum, now)
		if err == nil {
			return pr, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

func (a *Authenticator) loginJWTConfig(ctx context.Context, st RoleState, role *fsmpb.Role, c *fsmpb.AuthConfig, p JWTProof, hdr jwtHeader, sum [32]byte, now time.Time) (*Principal, error) {
	if !slices.Contains(c.GetAlgorithms(), hdr.alg) {
		return nil, fmt.Errorf("%w: %q (auth config %q accepts %s)", ErrAlgNotAllowed, hdr.alg, c.GetName(), strings.Join(c.GetAlgorithms(), ", "))
	}
	vt, err := a.verifyToken(ctx, c, p.Token, sum, hdr)
	if err != nil {
		return nil, err
	}

	leeway := time.Duration(c.GetLeewayNanos())
	switch {
	case vt.exp == nil:
		return nil, fmt.Errorf("%w: the token has no exp", ErrMalformedToken)
	case !now.Before(vt.exp.Time().Add(leeway)):
		return nil, fmt.Errorf("%w: at %s", ErrTokenExpired, vt.exp.Time().UTC().Format(time.RFC3339))
	case vt.nbf != nil && now.Add(leeway).Before(vt.nbf.Time()):
		return nil, fmt.Errorf("%w: not before %s", ErrTokenNotYet, vt.nbf.Time().UTC().Format(time.RFC3339))
	case vt.iat != nil && now.Add(leeway).Before(vt.iat.Time()):
		return nil, fmt.Errorf("%w: issued in the future (%s)", ErrTokenNotYet, vt.iat.Time().UTC().Format(time.RFC3339))
	}
	if c.GetIssuer() != "" && vt.iss != c.GetIssuer() {
		return nil, fmt.Errorf("%w: want %q", ErrWrongIssuer, c.GetIssuer())
	}
	if !anyEqual(vt.aud, c.GetBoundAudiences()) {
		return nil, fmt.Errorf("%w: auth config %q accepts %s", ErrWrongAudience, c.GetName(), strings.Join(c.GetBoundAudiences(), ", "))
	}
	if err := matchBoundClaims(vt.claims, c.GetBoundClaims(), "auth config "+strconv.Quote(c.GetName())); err != nil {
		return nil, err
	}
	if err := matchBoundClaims(vt.claims, role.GetBoundClaims(), "role "+strconv.Quote(role.GetName())); err != nil {
		return nil, err
	}
	sid, sidErr := spiffeid.FromString(vt.sub)
	isSPIFFE := sidErr == nil && strings.HasPrefix(vt.sub, "spiffe://")
	if err := matchSPIFFE(role, sid, isSPIFFE); err != nil {
		return nil, err
	}
	vars := vt.claims
	if isSPIFFE && role.GetIdentityTemplate() != "" {
		vars = make(Claims, len(vt.claims)+2)
		for k, v := range vt.claims {
			vars[k] = v
		}
		addSPIFFEVars(vars, sid)
	}
	ident, err := resolveIdentity(st, role, vars)
	if err != nil {
		return nil, err
	}

	ev := map[string]any{
		EvidenceMethod:     MethodJWT,
		EvidenceRole:       role.GetName(),
		EvidenceAuthConfig: c.GetName(),
		EvidenceIssuer:     vt.iss,
		EvidenceSubject:    vt.sub,
	}
	if isSPIFFE {
		ev[EvidenceSPIFFEID] = sid.String()
		ev[EvidenceTrustDomain] = sid.TrustDomain().Name()
	}
	if cl := evidenceClaims(vt.claims, c.GetEvidenceClaims()); len(cl) > 0 {
		ev[EvidenceClaims] = cl
	}
	if p.Source.IsValid() {
		ev[EvidenceSourceIP] = p.Source.Unmap().WithZone("").String()
	}
	return &Principal{Identity: ident, Role: role, Method: MethodJWT, Evidence: ev}, nil
}

// addSPIFFEVars adds the template variables a SPIFFE ID yields, unless a
// claim of the same name exists.
func addSPIFFEVars(vars Claims, id spiffeid.ID) {
	for k, v := range map[string]string{
		"spiffe_id":    id.String(),
		"trust_domain": id.TrustDomain().Name(),
		"spiffe_path":  strings.TrimPrefix(id.Path(), "/"),
	} {
		if _, ok := vars[k]; !ok && v != "" {
			vars[k] = v
		}
	}
}

func anyEqual(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// verifyToken checks the signature, through the verified-token cache.
func (a *Authenticator) verifyToken(ctx context.Context, c *fsmpb.AuthConfig, token string, sum [32]byte, hdr jwtHeader) (verifiedToken, error) {
	set, err := a.keys.keys(ctx, c)
	if err != nil {
		return verifiedToken{}, err
	}
	key := func(s *keySet) [32]byte {
		return cacheKey(sum[:], []byte(c.GetName()), []byte(strconv.FormatUint(s.gen, 10)))
	}
	if vt, ok := a.tokens.get(key(set)); ok {
		return vt, nil
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(hdr.alg)})
	if err != nil {
		return verifiedToken{}, fmt.Errorf("%w: %v", ErrMalformedToken, err)
	}
	if len(tok.Headers) != 1 {
		return verifiedToken{}, fmt.Errorf("%w: want one signature", ErrMalformedToken)
	}
	cands := candidates(set, hdr)
	if len(cands) == 0 {
		// Perhaps the issuer rotated keys since the last load.
		if set, err = a.keys.refetch(ctx, c); err != nil {
			return verifiedToken{}, err
		}
		if cands = candidates(set, hdr); len(cands) == 0 {
			return verifiedToken{}, fmt.Errorf("%w: kid %q, alg %s, auth config %q", ErrUnknownKey, hdr.kid, hdr.alg, c.GetName())
		}
	}
	for _, k := range cands {
		var std jwt.Claims
		var raw map[string]any
		if err := tok.Claims(k.Key, &std, &raw); err != nil {
			continue
		}
		vt := verifiedToken{claims: raw, iss: std.Issuer, sub: std.Subject, aud: std.Audience, exp: std.Expiry, nbf: std.NotBefore, iat: std.IssuedAt}
		a.tokens.put(key(set), vt)
		return vt, nil
	}
	return verifiedToken{}, fmt.Errorf("%w: auth config %q", ErrBadSignature, c.GetName())
}

// candidates are the keys that may verify a token: the one its kid names
// (if it fits the alg), or, for a token without a kid, up to
// maxKeylessTries keys that fit the alg.
func candidates(set *keySet, hdr jwtHeader) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range set.keys {
		if hdr.kid != "" && k.KeyID != hdr.kid {
			continue
		}
		if algFits(hdr.alg, k) {
			out = append(out, k)
			if hdr.kid == "" && len(out) == maxKeylessTries {
				break
			}
		}
	}
	return out
}
