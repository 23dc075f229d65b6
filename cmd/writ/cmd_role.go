package main

import (
	"context"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) roleCmd() *cobra.Command {
	return group("role", "Manage roles: how identities log in and for how long (admin)",
		a.rolePutCmd(), a.roleGetCmd(), a.roleListCmd(), a.roleDeleteCmd())
}

func (a *app) rolePutCmd() *cobra.Command {
	var (
		r             writv1.Role
		boundClaims   []string
		expectVersion uint64
		createOnly    bool
	)
	cmd := &cobra.Command{
		Use:   "put NAME --env ENV (--identity ID | --identity-template TEMPLATE)",
		Short: "Create or replace a role",
		Long: `A role is one service's issuance profile: the environment it issues in, how
callers may log in (approle, jwt, mtls, with the auth configs it accepts and
the claims, SPIFFE IDs and source addresses it binds), which identity a login
becomes (fixed, or rendered from the verified proof: ci/{repository},
mesh/{spiffe_path}), and lease limits. A role never issues to an identity of
another environment.`,
		Example: `  writ role put deploy-api-ci --env prod --identity ci/deploy-api \
      --auth-method approle --default-ttl 15m --max-ttl 1h --max-renewals 3 --max-live-leases 10
  writ role put ci --env prod --auth-config github --identity-template 'ci/{repository}' \
      --bound-claim ref=refs/heads/main
  writ role put mesh --env prod --auth-config mesh --identity-template 'mesh/{spiffe_path}' \
      --bound-spiffe-id 'spiffe://example.org/ns/prod/**'`,
		Args: exactArgs("NAME"),
	}
	f := cmd.Flags()
	f.StringVar(&r.Environment, "env", "", "environment the role issues in")
	f.StringVar(&r.Identity, "identity", "", "the identity a login through this role becomes")
	f.StringVar(&r.IdentityTemplate, "identity-template", "", "instead of --identity: rendered from the verified proof, e.g. 'ci/{repository}'")
	f.StringArrayVar(&r.AuthMethods, "auth-method", nil, "allowed auth method: approle, jwt or mtls (repeatable; default: approle, or the types of --auth-config)")
	f.StringArrayVar(&r.AuthConfigs, "auth-config", nil, "jwt/mtls: auth config whose tokens or certificates the role accepts (repeatable)")
	f.StringArrayVar(&boundClaims, "bound-claim", nil, "CLAIM=GLOB a token (or certificate field) must match (repeatable)")
	f.StringArrayVar(&r.BoundSpiffeIds, "bound-spiffe-id", nil, "SPIFFE ID pattern, e.g. 'spiffe://example.org/ns/prod/sa/*' (repeatable)")
	f.StringArrayVar(&r.BoundCidrs, "bound-cidr", nil, "source address or prefix every login must come from (repeatable)")
	f.StringVar(&r.RoleId, "role-id", "", "AppRole role id (default: assigned by the server)")
	secondsFlag(cmd, &r.DefaultTtlSeconds, "default-ttl", "lease TTL when the caller asks for none, e.g. 15m")
	secondsFlag(cmd, &r.MaxTtlSeconds, "max-ttl", "longest TTL a lease may get, including renewals, e.g. 1h")
	f.Uint32Var(&r.MaxRenewals, "max-renewals", 0, "renewals allowed per lease")
	f.Uint32Var(&r.MaxLiveLeases, "max-live-leases", 0, "live leases allowed at once through this role")
	f.Uint32Var(&r.MaxDelegationDepth, "max-delegation-depth", 0, "links of delegation allowed below a root lease (0: none)")
	f.Uint64Var(&expectVersion, "expect-version", 0, "fail unless the stored version is this")
	f.BoolVar(&createOnly, "create-only", false, "fail if the role exists")
	_ = cmd.MarkFlagRequired("env")
	cmd.MarkFlagsOneRequired("identity", "identity-template")
	cmd.MarkFlagsMutuallyExclusive("identity", "identity-template")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		bc, err := parseBoundClaims(boundClaims)
		if err != nil {
			return flagErr("bound-claim", err)
		}
		r.BoundClaims = bc
		for i, cidr := range r.BoundCidrs {
			if r.BoundCidrs[i], err = parseCIDR(cidr); err != nil {
				return flagErr("bound-cidr", err)
			}
		}
		for _, m := range r.AuthMethods {
			if strings.TrimSpace(m) == "" || strings.ContainsAny(m, " ,") {
				return usagef("--auth-method %q: one method name per flag, e.g. --auth-method approle", m)
			}
		}
		if r.MaxTtlSeconds != 0 && r.DefaultTtlSeconds > r.MaxTtlSeconds {
			return usagef("--default-ttl %s is longer than --max-ttl %s", seconds(r.DefaultTtlSeconds), seconds(r.MaxTtlSeconds))
		}
		r.Name = args[0]
		resp, err := c.admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{
			Role: &r, ExpectVersion: expectVersion, CreateOnly: createOnly,
		}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			roleText(t, resp.Msg.GetRole())
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

func (a *app) roleGetCmd() *cobra.Command {
	var rf readFlags
	cmd := &cobra.Command{Use: "get NAME", Short: "Show one role", Args: exactArgs("NAME")}
	rf.add(cmd)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.admin.GetRole(ctx, connect.NewRequest(&writv1.GetRoleRequest{Name: args[0], Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) { roleText(t, resp.Msg.GetRole()) })
	})
	return cmd
}

func (a *app) roleListCmd() *cobra.Command {
	var rf readFlags
	cmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List roles", Args: noArgs}
	rf.add(cmd)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.admin.ListRoles(ctx, connect.NewRequest(&writv1.ListRolesRequest{Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			rows := make([][]string, 0, len(resp.Msg.GetRoles()))
			for _, r := range resp.Msg.GetRoles() {
				ident := r.GetIdentity()
				if ident == "" {
					ident = r.GetIdentityTemplate()
				}
				rows = append(rows, []string{r.GetName(), r.GetEnvironment(), ident, strings.Join(r.GetAuthMethods(), ","),
					r.GetRoleId(), seconds(r.GetDefaultTtlSeconds()), seconds(r.GetMaxTtlSeconds()), u64(r.GetVersion())})
			}
			t.table([]string{"NAME", "ENV", "IDENTITY", "AUTH", "ROLE ID", "DEFAULT TTL", "MAX TTL", "VERSION"}, rows)
		})
	})
	return cmd
}

func (a *app) roleDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "delete NAME", Aliases: []string{"rm"}, Short: "Delete a role", Args: exactArgs("NAME")}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		resp, err := c.admin.DeleteRole(ctx, connect.NewRequest(&writv1.DeleteRoleRequest{Name: args[0]}))
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

func roleText(t *textOut, r *writv1.Role) {
	t.kv("name", r.GetName())
	t.kv("environment", r.GetEnvironment())
	if r.GetIdentityTemplate() != "" {
		t.kv("identity template", r.GetIdentityTemplate())
	} else {
		t.kv("identity", r.GetIdentity())
	}
	t.kv("role id", orDash(r.GetRoleId()))
	t.kv("auth methods", orDash(strings.Join(r.GetAuthMethods(), ", ")))
	t.kvIf("auth configs", strings.Join(r.GetAuthConfigs(), ", "))
	t.kvIf("bound claims", boundClaimsText(r.GetBoundClaims()))
	t.kvIf("bound spiffe ids", strings.Join(r.GetBoundSpiffeIds(), ", "))
	t.kvIf("bound cidrs", strings.Join(r.GetBoundCidrs(), ", "))
	t.kv("default ttl", seconds(r.GetDefaultTtlSeconds()))
	t.kv("max ttl", seconds(r.GetMaxTtlSeconds()))
	t.kv("max renewals", r.GetMaxRenewals())
	t.kv("max live leases", r.GetMaxLiveLeases())
	t.kv("max delegation", r.GetMaxDelegationDepth())
	t.kv("epoch", r.GetEpoch())
	t.kv("version", r.GetVersion())
	t.kv("created", t.time(r.GetCreatedAt()))
	t.kv("updated", t.time(r.GetUpdatedAt()))
}
