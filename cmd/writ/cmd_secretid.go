package main

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) secretIDCmd() *cobra.Command {
	return group("secret-id", "Manage AppRole secret ids (admin)",
		a.secretIDCreateCmd(), a.secretIDListCmd(), a.secretIDRevokeCmd())
}

func (a *app) secretIDCreateCmd() *cobra.Command {
	var (
		req   writv1.CreateSecretIDRequest
		cidrs []string
		meta  []string
	)
	cmd := &cobra.Command{
		Use:   "create ROLE",
		Short: "Create a secret id for a role (shown once)",
		Long: `Create an AppRole secret id. The secret is printed once and stored by the
server only as a keyed hash: keep it now. The accessor names it for list
and revoke without revealing it.`,
		Example: `  writ secret-id create deploy-api-ci --uses 10 --ttl 24h --cidr 10.0.0.0/8`,
		Args:    exactArgs("ROLE"),
	}
	f := cmd.Flags()
	f.Uint32Var(&req.NumUses, "uses", 0, "logins allowed (0: unlimited)")
	secondsFlag(cmd, &req.TtlSeconds, "ttl", "lifetime, e.g. 24h (default: no expiry)")
	f.StringArrayVar(&cidrs, "cidr", nil, "source address or prefix allowed to use it (repeatable)")
	f.StringArrayVar(&meta, "meta", nil, "metadata key=value (repeatable)")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		for _, s := range cidrs {
			cidr, err := parseCIDR(s)
			if err != nil {
				return flagErr("cidr", err)
			}
			req.Cidrs = append(req.Cidrs, cidr)
		}
		m, err := parseKVs(meta)
		if err != nil {
			return flagErr("meta", err)
		}
		req.Role, req.Metadata = args[0], m
		resp, err := c.admin.CreateSecretID(ctx, connect.NewRequest(&req))
		if err != nil {
			return err
		}
		if p.format.kind == "text" {
			fmt.Fprintln(a.stderr, "The secret id is shown only now; store it safely.")
		}
		return p.emit(resp.Msg, func(t *textOut) {
			t.kv("secret id", resp.Msg.GetSecretId())
			t.kv("accessor", resp.Msg.GetAccessor())
			t.kv("expires", expiry(t, resp.Msg.GetExpiresAt()))
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

// expiry renders an expiry where none means never.
func expiry(t *textOut, ts *timestamppb.Timestamp) string {
	if s := t.time(ts); s != "-" {
		return s
	}
	return "never"
}

func (a *app) secretIDListCmd() *cobra.Command {
	var (
		rf       readFlags
		accessor string
	)
	cmd := &cobra.Command{
		Use: "list [ROLE] [--accessor ACCESSOR]", Aliases: []string{"ls"},
		Short: "List secret ids by role or look one up by accessor (never the secret)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one argument (ROLE)", cmd.CommandPath())
			}
			if len(args) == 0 && accessor == "" {
				return usagef("%s needs a ROLE or --accessor", cmd.CommandPath())
			}
			return nil
		},
	}
	rf.add(cmd)
	cmd.Flags().StringVar(&accessor, "accessor", "", "only the secret id with this accessor")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		req := &writv1.ListSecretIDsRequest{Accessor: strings.TrimSpace(accessor), Read: ro}
		if len(args) == 1 {
			req.Role = args[0]
		}
		resp, err := c.admin.ListSecretIDs(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			rows := make([][]string, 0, len(resp.Msg.GetSecretIds()))
			for _, s := range resp.Msg.GetSecretIds() {
				// Unlimited secret ids are not counted (FSM version 3).
				uses := "∞"
				if s.GetNumUses() > 0 {
					uses = fmt.Sprintf("%d/%d", s.GetUses(), s.GetNumUses())
				}
				exp := shortTime(s.GetExpiresAt())
				if exp == "-" {
					exp = "never"
				}
				rows = append(rows, []string{s.GetAccessor(), uses, exp, strings.Join(s.GetCidrs(), ","), shortTime(s.GetCreatedAt()), pairs(s.GetMetadata())})
			}
			t.table([]string{"ACCESSOR", "USES", "EXPIRES", "CIDRS", "CREATED", "METADATA"}, rows)
		})
	})
	return cmd
}

func (a *app) secretIDRevokeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "revoke ACCESSOR", Short: "Revoke a secret id by its accessor", Args: exactArgs("ACCESSOR")}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		resp, err := c.admin.RevokeSecretID(ctx, connect.NewRequest(&writv1.RevokeSecretIDRequest{Accessor: args[0]}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			t.kv("revoked", args[0])
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}
