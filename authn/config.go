package authn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// ErrInvalidConfig wraps every ValidateAuthConfig failure.
var ErrInvalidConfig = errors.New("invalid auth config")

var aliasRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// ValidateAuthConfig checks an auth config deeply before it is proposed:
// what Apply checks (the shape) plus what only a parser can tell. Inline
// keys and CA bundles must parse; a JWKS file must be an absolute path that
// reads and parses on this node (every node reads its own copy); a JWKS URL
// must be https (http only to a loopback address) and is fetched once,
// which also warms this node's cache; evidence claims must be "name" or
// "alias=claim" with an identifier alias. Errors wrap ErrInvalidConfig.
func (a *Authenticator) ValidateAuthConfig(ctx context.Context, c *fsmpb.AuthConfig) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch c.GetType() {
	case MethodMTLS:
		if _, _, err := ParseCABundle(c.GetCaBundlePem()); err != nil {
			return bad("%v", err)
		}
		return nil
	case MethodJWT:
	default:
		return bad("type %q: want jwt or mtls", c.GetType())
	}
	for _, e := range c.GetEvidenceClaims() {
		alias, name, ok := strings.Cut(e, "=")
		if !ok {
			alias, name = strings.TrimPrefix(e, "/"), e
		}
		if !aliasRE.MatchString(alias) || name == "" {
			return bad("evidence claim %q: want name or alias=claim, the alias an identifier (letters, digits, _)", e)
		}
	}
	switch {
	case c.GetJwks() != "":
		if _, err := parseJWKS([]byte(c.GetJwks())); err != nil {
			return bad("%v", err)
		}
	case c.GetJwksFile() != "":
		if !filepath.IsAbs(c.GetJwksFile()) {
			return bad("jwks_file %q must be an absolute path", c.GetJwksFile())
		}
		if _, err := a.keys.fetch(ctx, c); err != nil {
			return bad("jwks_file: %v", err)
		}
	case c.GetJwksUrl() != "":
		u, err := url.Parse(c.GetJwksUrl())
		if err != nil || u.Host == "" {
			return bad("jwks_url %q is not an absolute URL", c.GetJwksUrl())
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
			return bad("jwks_url must use https (http only to a loopback address)")
		}
		if _, err := a.keys.load(ctx, c, sourceOf(c)); err != nil {
			return bad("jwks_url: %v", err)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
