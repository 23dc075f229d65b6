package fsm

import (
	"net/netip"
	"strings"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Auth configs and the role bindings that refer to them. Apply checks shape
// only (names, sizes, which fields go with which type); the proposing node
// has already parsed the keys and bundles (authn.ValidateAuthConfig), which
// Apply must not do: parsing is not its business and a newer parser must
// never make a replay diverge.

// Limits on auth configs and role bindings.
const (
	maxAuthKeyBytes   = 64 << 10  // inline JWKS
	maxCABundleBytes  = 256 << 10 // PEM trust anchors
	maxBindings       = 32        // bound claims, SPIFFE patterns, CIDRs, audiences, evidence claims
	maxRoleAuthConfig = 16
	maxLeewayNanos    = int64(10 * 60 * 1e9)
)

var jwtAlgorithms = map[string]bool{"RS256": true, "ES256": true, "EdDSA": true}

func (a *applier) putAuthConfig(p *fsmpb.PutAuthConfig) *fsmpb.Result {
	n := p.GetConfig()
	if r := checkAuthConfigShape(n); r != nil {
		return r
	}
	old, _ := a.first(tAuth, "id", n.GetName()).(*fsmpb.AuthConfig)
	if old != nil && p.GetCreateOnly() {
		return fail(codeExists, "auth config %q already exists", n.GetName())
	}
	if v := p.GetExpectVersion(); v != 0 && (old == nil || old.GetVersion() != v) {
		return fail(codeAborted, "auth config %q is at version %d, not %d", n.GetName(), old.GetVersion(), v)
	}
	if old != nil && old.GetType() != n.GetType() {
		return fail(codePrecondition, "auth config %q is of type %s: delete it to make a %s config", n.GetName(), old.GetType(), n.GetType())
	}
	n.UpdatedUnixNano = a.now
	if old == nil {
		n.Version, n.CreatedUnixNano = 1, a.now
	} else {
		n.Version, n.CreatedUnixNano = old.Version+1, old.CreatedUnixNano
	}
	a.put(tAuth, n)
	return &fsmpb.Result{Code: codeOK, Version: n.Version}
}

func checkAuthConfigShape(n *fsmpb.AuthConfig) *fsmpb.Result {
	if !validID(n.GetName()) {
		return fail(codeInvalid, "auth config name must be 1..%d bytes without spaces or control characters", MaxIDBytes)
	}
	switch n.GetType() {
	case "jwt":
		sources := 0
		for _, s := range []string{n.GetJwks(), n.GetJwksFile(), n.GetJwksUrl()} {
			if s != "" {
				sources++
			}
		}
		switch {
		case sources != 1:
			return fail(codeInvalid, "auth config %q: want exactly one of jwks, jwks_file and jwks_url", n.GetName())
		case len(n.GetJwks()) > maxAuthKeyBytes:
			return fail(codeInvalid, "auth config %q: inline jwks is longer than %d bytes", n.GetName(), maxAuthKeyBytes)
		case len(n.GetAlgorithms()) == 0:
			return fail(codeInvalid, "auth config %q: at least one algorithm is required", n.GetName())
		case len(n.GetBoundAudiences()) == 0 || len(n.GetBoundAudiences()) > maxBindings:
			return fail(codeInvalid, "auth config %q: want 1..%d bound audiences", n.GetName(), maxBindings)
		case n.GetLeewayNanos() < 0 || n.GetLeewayNanos() > maxLeewayNanos:
			return fail(codeInvalid, "auth config %q: leeway must be between 0 and 10m", n.GetName())
		case n.GetJwksRefreshNanos() < 0:
			return fail(codeInvalid, "auth config %q: jwks refresh must not be negative", n.GetName())
		case n.GetCaBundlePem() != "":
			return fail(codeInvalid, "auth config %q: a jwt config holds no ca bundle", n.GetName())
		case len(n.GetEvidenceClaims()) > maxBindings:
			return fail(codeInvalid, "auth config %q: at most %d evidence claims", n.GetName(), maxBindings)
		}
		for _, alg := range n.GetAlgorithms() {
			if !jwtAlgorithms[alg] {
				return fail(codeInvalid, "auth config %q: algorithm %q: want RS256, ES256 or EdDSA", n.GetName(), alg)
			}
		}
		for _, aud := range n.GetBoundAudiences() {
			if aud == "" {
				return fail(codeInvalid, "auth config %q: empty bound audience", n.GetName())
			}
		}
		if r := checkBoundClaims("auth config "+n.GetName(), n.GetBoundClaims()); r != nil {
			return r
		}
	case "mtls":
		switch {
		case n.GetCaBundlePem() == "" || len(n.GetCaBundlePem()) > maxCABundleBytes:
			return fail(codeInvalid, "auth config %q: an mtls config needs a ca bundle of at most %d bytes", n.GetName(), maxCABundleBytes)
		case n.GetIssuer() != "" || len(n.GetAlgorithms()) > 0 || n.GetJwks() != "" || n.GetJwksFile() != "" || n.GetJwksUrl() != "" ||
			len(n.GetBoundAudiences()) > 0 || len(n.GetBoundClaims()) > 0 || len(n.GetEvidenceClaims()) > 0:
			return fail(codeInvalid, "auth config %q: an mtls config holds only a ca bundle", n.GetName())
		}
	default:
		return fail(codeInvalid, "auth config type %q: want jwt or mtls", n.GetType())
	}
	return nil
}

func checkBoundClaims(what string, claims []*fsmpb.BoundClaim) *fsmpb.Result {
	if len(claims) > maxBindings {
		return fail(codeInvalid, "%s: at most %d bound claims", what, maxBindings)
	}
	for _, c := range claims {
		if c.GetClaim() == "" || len(c.GetValues()) == 0 || len(c.GetValues()) > maxBindings {
			return fail(codeInvalid, "%s: a bound claim needs a name and 1..%d values", what, maxBindings)
		}
	}
	return nil
}

// deleteAuthConfig refuses while a role names the config: a role that
// accepts logins from a config that no longer exists is a broken binding.
func (a *applier) deleteAuthConfig(p *fsmpb.DeleteAuthConfig) *fsmpb.Result {
	old := a.first(tAuth, "id", p.GetName())
	if old == nil {
		return fail(codeNotFound, "auth config %q not found", p.GetName())
	}
	it := a.iter(tRole, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*fsmpb.Role)
		for _, name := range r.GetAuthConfigs() {
			if name == p.GetName() {
				return fail(codePrecondition, "auth config %q is used by role %q", p.GetName(), r.GetName())
			}
		}
	}
	a.del(tAuth, old)
	return ok()
}

// checkRoleBindings validates what a role binds beyond its identity: auth
// configs (which must exist, with a type the role allows), bound claims,
// SPIFFE ID patterns and CIDRs, and that a templated identity comes only
// from a proof with claims to render it from.
func (a *applier) checkRoleBindings(n *fsmpb.Role) *fsmpb.Result {
	methods := map[string]bool{}
	for _, m := range n.GetAuthMethods() {
		methods[m] = true
	}
	if n.GetIdentityTemplate() != "" && methods["approle"] {
		return fail(codeInvalid, "role %q: an identity template is rendered from a JWT or certificate; AppRole logins carry nothing to render it from", n.GetName())
	}
	if len(n.GetAuthConfigs()) > maxRoleAuthConfig {
		return fail(codeInvalid, "role %q: at most %d auth configs", n.GetName(), maxRoleAuthConfig)
	}
	types := map[string]bool{}
	for _, name := range n.GetAuthConfigs() {
		cfg, _ := a.first(tAuth, "id", name).(*fsmpb.AuthConfig)
		if cfg == nil {
			return fail(codePrecondition, "role %q names auth config %q, which does not exist", n.GetName(), name)
		}
		if !methods[cfg.GetType()] {
			return fail(codeInvalid, "role %q names %s auth config %q but does not allow the %s method", n.GetName(), cfg.GetType(), name, cfg.GetType())
		}
		types[cfg.GetType()] = true
	}
	for _, m := range []string{"jwt", "mtls"} {
		if methods[m] && !types[m] {
			return fail(codeInvalid, "role %q allows %s logins but names no %s auth config", n.GetName(), m, m)
		}
	}
	if r := checkBoundClaims("role "+n.GetName(), n.GetBoundClaims()); r != nil {
		return r
	}
	if len(n.GetBoundSpiffeIds()) > maxBindings || len(n.GetBoundCidrs()) > maxBindings {
		return fail(codeInvalid, "role %q: at most %d SPIFFE ID patterns and %d CIDRs", n.GetName(), maxBindings, maxBindings)
	}
	for _, pat := range n.GetBoundSpiffeIds() {
		if !strings.HasPrefix(pat, "spiffe://") || len(pat) > MaxIDBytes*8 {
			return fail(codeInvalid, "role %q: SPIFFE ID pattern %q must start with spiffe://", n.GetName(), pat)
		}
	}
	for _, c := range n.GetBoundCidrs() {
		if _, err := netip.ParsePrefix(c); err != nil {
			if _, err := netip.ParseAddr(c); err != nil {
				return fail(codeInvalid, "role %q: bound cidr %q does not parse", n.GetName(), c)
			}
		}
	}
	return nil
}

// validTemplate: like validID, with at least one {placeholder} and balanced,
// non-empty, unnested braces.
func validTemplate(s string) bool {
	if !validID(s) {
		return false
	}
	lits, holes := splitTemplate(s)
	return lits != nil && len(holes) > 0
}

// splitTemplate splits "ci/{repository}/x" into literals ["ci/", "/x"]
// around placeholders ["repository"]: len(lits) == len(holes)+1. It returns
// nil literals when braces are unbalanced, nested or empty.
func splitTemplate(s string) (lits, holes []string) {
	rest := s
	for {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			return append(lits, rest), holes
		}
		if rest[i] == '}' {
			return nil, nil
		}
		j := strings.IndexAny(rest[i+1:], "{}")
		if j <= 0 || rest[i+1+j] != '}' {
			return nil, nil
		}
		lits = append(lits, rest[:i])
		holes = append(holes, rest[i+1:i+1+j])
		rest = rest[i+2+j:]
	}
}

// TemplateMatches reports whether id has the shape of template: its literal
// parts in order, each placeholder standing for one or more characters.
// Apply uses it to check that a templated role issues only identities it
// could have rendered; it cannot re-render (it never sees the proof).
func TemplateMatches(template, id string) bool {
	lits, holes := splitTemplate(template)
	if lits == nil {
		return false
	}
	if !strings.HasPrefix(id, lits[0]) {
		return false
	}
	return matchHoles(id[len(lits[0]):], lits[1:], len(holes))
}

// matchHoles matches s against (hole lit)*: each hole one or more bytes.
func matchHoles(s string, lits []string, holes int) bool {
	if holes == 0 {
		return s == ""
	}
	lit := lits[0]
	if len(lits) == 1 {
		// The last literal ends the string; the hole takes what is before it.
		return len(s) > len(lit) && strings.HasSuffix(s, lit)
	}
	for i := 1; i+len(lit) <= len(s); i++ {
		if s[i:i+len(lit)] == lit && matchHoles(s[i+len(lit):], lits[1:], holes-1) {
			return true
		}
	}
	return false
}

// roleIssuesTo reports whether role may issue a lease to identity: its fixed
// identity, or one its template could render.
func roleIssuesTo(role *fsmpb.Role, identity string) bool {
	if role.GetIdentityTemplate() != "" {
		return TemplateMatches(role.GetIdentityTemplate(), identity)
	}
	return role.GetIdentity() == identity
}

// AuthConfig looks an auth config up by name.
func (v *View) AuthConfig(name string) (*fsmpb.AuthConfig, bool) {
	c, ok := v.first(tAuth, "id", name).(*fsmpb.AuthConfig)
	return c, ok
}

// AuthConfigs lists every auth config, sorted by name.
func (v *View) AuthConfigs() []*fsmpb.AuthConfig { return all[*fsmpb.AuthConfig](v, tAuth) }
