package authn

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Claims are the verified facts a proof carries: a JWT's payload, or the
// fields of a verified client certificate (see MTLS). Bound claims, identity
// templates and evidence all read them the same way.
type Claims map[string]any

// Lookup returns the claim called name: a top-level claim, or, when name
// starts with "/", the value at that JSON pointer (RFC 6901) into nested
// objects and arrays, e.g. "/kubernetes.io/serviceaccount/name".
func (c Claims) Lookup(name string) (any, bool) {
	if !strings.HasPrefix(name, "/") {
		v, ok := c[name]
		return v, ok
	}
	var cur any = map[string]any(c)
	for _, tok := range strings.Split(name[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := cur.(type) {
		case map[string]any:
			v, ok := x[tok]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			cur = x[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// scalarString renders a scalar claim as text: strings as they are, booleans
// as true/false, integral numbers in decimal. Objects, arrays and other
// numbers have no text form.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), true
		}
	case json.Number:
		return x.String(), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	}
	return "", false
}

// claimStrings is the text form of a claim: one string for a scalar, one per
// scalar element for an array (audiences, groups).
func claimStrings(v any) []string {
	if s, ok := scalarString(v); ok {
		return []string{s}
	}
	arr, ok := v.([]any)
	if !ok {
		if ss, ok := v.([]string); ok {
			return ss
		}
		return nil
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		if s, ok := scalarString(e); ok {
			out = append(out, s)
		}
	}
	return out
}

// Glob reports whether s matches pattern, where * stands for any run of
// characters (none included) and everything else for itself. It runs in
// O(len(pattern)·len(s)) whatever the stars (one backtrack point: the last
// star), so a long hostile claim cannot make matching exponential.
func Glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchBoundClaims checks every bound claim: the claim must exist and one of
// its text values must match one of the bound globs.
func matchBoundClaims(c Claims, bound []*fsmpb.BoundClaim, where string) error {
	for _, b := range bound {
		v, ok := c.Lookup(b.GetClaim())
		if !ok {
			return fmt.Errorf("%w: %s requires claim %q, which the proof lacks", ErrClaimMismatch, where, b.GetClaim())
		}
		if !anyMatch(claimStrings(v), b.GetValues()) {
			return fmt.Errorf("%w: claim %q does not match %s", ErrClaimMismatch, b.GetClaim(), where)
		}
	}
	return nil
}

func anyMatch(values, patterns []string) bool {
	for _, v := range values {
		for _, p := range patterns {
			if Glob(p, v) {
				return true
			}
		}
	}
	return false
}

// MatchSPIFFEID reports whether id matches pattern. Both start with
// spiffe://trust-domain; the trust domain must be equal, and the path is
// compared segment by segment: a segment glob (* within one segment, e.g.
// "api-*"), and a last segment "**" matching one or more segments.
func MatchSPIFFEID(pattern string, id spiffeid.ID) bool {
	rest, ok := strings.CutPrefix(pattern, "spiffe://")
	if !ok {
		return false
	}
	td, path, _ := strings.Cut(rest, "/")
	if !strings.EqualFold(td, id.TrustDomain().Name()) {
		return false
	}
	want := strings.Split(path, "/")
	got := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if path == "" {
		return id.Path() == ""
	}
	if id.Path() == "" {
		return false
	}
	for i, w := range want {
		if w == "**" && i == len(want)-1 {
			return len(got) > i
		}
		if i >= len(got) || !Glob(w, got[i]) {
			return false
		}
	}
	return len(got) == len(want)
}

// matchSPIFFE checks the role's bound SPIFFE ID patterns (none: no check).
func matchSPIFFE(role *fsmpb.Role, id spiffeid.ID, has bool) error {
	pats := role.GetBoundSpiffeIds()
	if len(pats) == 0 {
		return nil
	}
	if !has {
		return fmt.Errorf("%w: the proof carries no SPIFFE ID and role %q requires one", ErrSPIFFEIDMismatch, role.GetName())
	}
	for _, p := range pats {
		if MatchSPIFFEID(p, id) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not allowed by role %q", ErrSPIFFEIDMismatch, id, role.GetName())
}

// checkRoleSource applies the role's bound CIDRs (none: no check).
func checkRoleSource(role *fsmpb.Role, src netip.Addr) error {
	if cidrs := role.GetBoundCidrs(); len(cidrs) > 0 && !sourceAllowed(cidrs, src) {
		return fmt.Errorf("%w: role %q", ErrSourceNotAllowed, role.GetName())
	}
	return nil
}

// RenderTemplate fills a role's identity template ("ci/{repository}") from
// claims. Each placeholder names a claim (or a JSON pointer) with a text
// value that is not empty and holds no space, control character or brace;
// anything else fails with ErrIdentityTemplate, so a hostile claim value
// cannot steer the login to an identity the template does not describe.
func RenderTemplate(tpl string, c Claims) (string, error) {
	var b strings.Builder
	rest := tpl
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("%w: template %q is malformed", ErrIdentityTemplate, tpl)
		}
		name := rest[i+1 : i+j]
		v, ok := c.Lookup(name)
		s, isText := scalarString(v)
		if !ok || !isText || s == "" || strings.ContainsFunc(s, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r) || r == '{' || r == '}'
		}) {
			return "", fmt.Errorf("%w: placeholder {%s} has no usable value", ErrIdentityTemplate, name)
		}
		b.WriteString(rest[:i])
		b.WriteString(s)
		rest = rest[i+j+1:]
	}
	out := b.String()
	if len(out) > fsm.MaxIDBytes || !fsm.TemplateMatches(tpl, out) {
		return "", fmt.Errorf("%w: rendered identity is too long", ErrIdentityTemplate)
	}
	return out, nil
}

// resolveIdentity finds the identity a login through role becomes (fixed,
// or rendered from claims) and checks it may log in.
func resolveIdentity(st RoleState, role *fsmpb.Role, c Claims) (*fsmpb.Identity, error) {
	if tpl := role.GetIdentityTemplate(); tpl != "" {
		id, err := RenderTemplate(tpl, c)
		if err != nil {
			return nil, err
		}
		return checkIdentity(st, role, id)
	}
	return roleIdentity(st, role)
}

// evidenceClaims copies the configured claims into evidence: each entry is
// "name" or "alias=name-or-pointer". Scalars become strings, arrays sets of
// strings; absent claims are left out (policies test `has`).
func evidenceClaims(c Claims, spec []string) map[string]any {
	if len(spec) == 0 {
		return nil
	}
	out := make(map[string]any, len(spec))
	for _, e := range spec {
		alias, name, ok := strings.Cut(e, "=")
		if !ok {
			alias, name = strings.TrimPrefix(e, "/"), e
		}
		v, found := c.Lookup(name)
		if !found {
			continue
		}
		if s, ok := scalarString(v); ok {
			out[alias] = s
		} else if ss := claimStrings(v); ss != nil {
			out[alias] = strSet(ss)
		}
	}
	return out
}
