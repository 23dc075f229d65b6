package main

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) authConfigCmd() *cobra.Command {
	return group("auth-config", "Manage JWT/OIDC and mTLS auth configs (admin)",
		a.authConfigPutCmd(), a.authConfigGetCmd(), a.authConfigListCmd(), a.authConfigDeleteCmd())
}

// parseBoundClaims turns repeated claim=glob flags into bound claims; a
// claim given twice accepts either value.
func parseBoundClaims(flags []string) ([]*writv1.BoundClaim, error) {
	var out []*writv1.BoundClaim
	byName := map[string]*writv1.BoundClaim{}
	for _, f := range flags {
		name, value, ok := strings.Cut(f, "=")
		if !ok || strings.TrimSpace(name) == "" || value == "" {
			return nil, fmt.Errorf("%q: want CLAIM=VALUE (VALUE may use *; CLAIM may be a JSON pointer like /kubernetes.io/namespace)", f)
		}
		b := byName[name]
		if b == nil {
			b = &writv1.BoundClaim{Claim: name}
			byName[name] = b
			out = append(out, b)
		}
		b.Values = append(b.Values, value)
	}
	return out, nil
}

func boundClaimsText(bs []*writv1.BoundClaim) string {
	parts := make([]string, 0, len(bs))
	for _, b := range bs {
		parts = append(parts, b.GetClaim()+"="+strings.Join(b.GetValues(), "|"))
	}
	return strings.Join(parts, ", ")
}

func (a *app) authConfigPutCmd() *cobra.Command {
	var (
		c             writv1.AuthConfig
		jwks, caFile  string
		claims        []string
		expectVersion uint64
		createOnly    bool
	)
	cmd := &cobra.Command{
		Use:   "put NAME --type jwt|mtls ...",
		Short: "Create or replace an auth config",
		Long: `An auth config says how logins are verified. A jwt config names an issuer,
the accepted algorithms (RS256, ES256, EdDSA; never none or HMAC), exactly one
key source (--jwks inline or @FILE, --jwks-file read by every node from its own
disk, or --jwks-url fetched and refreshed), the audiences and claims every
token must carry, and the claims that policies see as context.auth.claims.
An mtls config holds the CA bundle client certificates must chain to.
Roles name auth configs with 'writ role put --auth-config'.`,
		Example: `  writ auth-config put github --type jwt --issuer https://token.actions.githubusercontent.com \
      --jwks-url https://token.actions.githubusercontent.com/.well-known/jwks --audience writ \
      --bound-claim repository_owner=acme --evidence-claim repository --evidence-claim ref
  writ auth-config put mesh --type mtls --ca-bundle @/etc/spire/bundle.pem`,
		Args: exactArgs("NAME"),
	}
	f := cmd.Flags()
	f.StringVar(&c.Type, "type", "", "jwt or mtls")
	f.StringVar(&c.Issuer, "issuer", "", "jwt: the required iss (empty only for SPIFFE JWT-SVIDs)")
	f.StringArrayVar(&c.Algorithms, "alg", nil, "jwt: accepted algorithm, RS256, ES256 or EdDSA (repeatable; default all three)")
	f.StringVar(&jwks, "jwks", "", "jwt: inline JWKS as JSON, @FILE or @- (stored in the cluster)")
	f.StringVar(&c.JwksFile, "jwks-file", "", "jwt: absolute path of a JWKS file every node reads from its own disk")
	f.StringVar(&c.JwksUrl, "jwks-url", "", "jwt: https URL of the issuer's JWKS, fetched, cached and refreshed")
	secondsFlag(cmd, &c.JwksRefreshSeconds, "jwks-refresh", "jwt: re-read a JWKS file or URL this often (default 5m)")
	secondsFlag(cmd, &c.LeewaySeconds, "leeway", "jwt: clock-skew leeway for exp, nbf and iat, e.g. 30s")
	f.StringArrayVar(&c.BoundAudiences, "audience", nil, "jwt: accepted aud (repeatable; at least one)")
	f.StringArrayVar(&claims, "bound-claim", nil, "jwt: CLAIM=GLOB every token must match (repeatable)")
	f.StringArrayVar(&c.EvidenceClaims, "evidence-claim", nil, "jwt: claim shown to policies as context.auth.claims: NAME or ALIAS=CLAIM (repeatable)")
	f.StringVar(&caFile, "ca-bundle", "", "mtls: PEM CA certificates as @FILE or @-")
	f.StringVar(&c.Description, "description", "", "free text")
	f.Uint64Var(&expectVersion, "expect-version", 0, "fail unless the stored version is this")
	f.BoolVar(&createOnly, "create-only", false, "fail if the config exists")
	_ = cmd.MarkFlagRequired("type")
	cmd.MarkFlagsMutuallyExclusive("jwks", "jwks-file", "jwks-url")
	cmd.RunE = a.call(func(ctx context.Context, cl *clients, p *printer, args []string) error {
		c.Name = args[0]
		if jwks != "" {
			b, err := inlineOrFile(jwks, a)
			if err != nil {
				return flagErr("jwks", err)
			}
			c.Jwks = b
		}
		if caFile != "" {
			name, ok := strings.CutPrefix(caFile, "@")
			if !ok {
				return usagef("--ca-bundle: want @FILE or @-")
			}
			b, err := readInput(name, a.stdin)
			if err != nil {
				return flagErr("ca-bundle", err)
			}
			c.CaBundlePem = string(b)
		}
		bc, err := parseBoundClaims(claims)
		if err != nil {
			return flagErr("bound-claim", err)
		}
		c.BoundClaims = bc
		resp, err := cl.authConfigs.PutAuthConfig(ctx, connect.NewRequest(&writv1.PutAuthConfigRequest{
			Config: &c, ExpectVersion: expectVersion, CreateOnly: createOnly,
		}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			authConfigText(t, resp.Msg.GetConfig())
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

// inlineOrFile returns v, or the contents of the file (or stdin) after @.
func inlineOrFile(v string, a *app) (string, error) {
	name, ok := strings.CutPrefix(v, "@")
	if !ok {
		return v, nil
	}
	b, err := readInput(name, a.stdin)
	return string(b), err
}

func (a *app) authConfigGetCmd() *cobra.Command {
	var rf readFlags
	cmd := &cobra.Command{Use: "get NAME", Short: "Show one auth config", Args: exactArgs("NAME")}
	rf.add(cmd)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.authConfigs.GetAuthConfig(ctx, connect.NewRequest(&writv1.GetAuthConfigRequest{Name: args[0], Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) { authConfigText(t, resp.Msg.GetConfig()) })
	})
	return cmd
}

func (a *app) authConfigListCmd() *cobra.Command {
	var rf readFlags
	cmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List auth configs", Args: noArgs}
	rf.add(cmd)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.authConfigs.ListAuthConfigs(ctx, connect.NewRequest(&writv1.ListAuthConfigsRequest{Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			rows := make([][]string, 0, len(resp.Msg.GetConfigs()))
			for _, c := range resp.Msg.GetConfigs() {
				rows = append(rows, []string{c.GetName(), c.GetType(), orDash(c.GetIssuer()), keySource(c), strings.Join(c.GetBoundAudiences(), ","), u64(c.GetVersion())})
			}
			t.table([]string{"NAME", "TYPE", "ISSUER", "KEYS", "AUDIENCES", "VERSION"}, rows)
		})
	})
	return cmd
}

func (a *app) authConfigDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "delete NAME", Aliases: []string{"rm"}, Short: "Delete an auth config no role uses", Args: exactArgs("NAME")}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		resp, err := c.authConfigs.DeleteAuthConfig(ctx, connect.NewRequest(&writv1.DeleteAuthConfigRequest{Name: args[0]}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			t.kv("deleted", args[0])
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

func keySource(c *writv1.AuthConfig) string {
	switch {
	case c.GetType() == "mtls":
		return "ca bundle"
	case c.GetJwksUrl() != "":
		return c.GetJwksUrl()
	case c.GetJwksFile() != "":
		return "file " + c.GetJwksFile()
	case c.GetJwks() != "":
		return "inline jwks"
	}
	return "-"
}

func authConfigText(t *textOut, c *writv1.AuthConfig) {
	t.kv("name", c.GetName())
	t.kv("type", c.GetType())
	if c.GetType() == "jwt" {
		t.kv("issuer", orDash(c.GetIssuer()))
		t.kv("algorithms", strings.Join(c.GetAlgorithms(), ", "))
		t.kv("keys", keySource(c))
		if c.GetJwksRefreshSeconds() != 0 {
			t.kv("jwks refresh", seconds(c.GetJwksRefreshSeconds()))
		}
		t.kv("leeway", seconds(c.GetLeewaySeconds()))
		t.kv("audiences", strings.Join(c.GetBoundAudiences(), ", "))
		t.kvIf("bound claims", boundClaimsText(c.GetBoundClaims()))
		t.kvIf("evidence claims", strings.Join(c.GetEvidenceClaims(), ", "))
	} else {
		t.kv("ca bundle", fmt.Sprintf("%d bytes", len(c.GetCaBundlePem())))
	}
	t.kvIf("description", c.GetDescription())
	t.kv("version", c.GetVersion())
	t.kv("created", t.time(c.GetCreatedAt()))
	t.kv("updated", t.time(c.GetUpdatedAt()))
}
