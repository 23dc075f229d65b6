package main

import (
	"context"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) identityCmd() *cobra.Command {
	return group("identity", "Manage identities (admin)",
		a.identityPutCmd(), a.identityGetCmd(), a.identityListCmd(), a.identityDeleteCmd(),
		a.identityStatusCmd("disable", "disabled", "Disable an identity: everything it holds is invalid at once, and it cannot log in"),
		a.identityStatusCmd("enable", "active", "Enable a disabled identity (its old leases stay invalid)"))
}

// identityStatusCmd flips an identity's status with a read and a put under
// the read's version, so a concurrent change is never overwritten.
func (a *app) identityStatusCmd(use, status, short string) *cobra.Command {
	cmd := &cobra.Command{Use: use + " ID", Short: short, Args: exactArgs("ID")}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		got, err := c.admin.GetIdentity(ctx, connect.NewRequest(&writv1.GetIdentityRequest{
			Id: args[0], Read: &writv1.ReadOptions{Consistency: writv1.Consistency_CONSISTENCY_LINEARIZABLE},
		}))
		if err != nil {
			return err
		}
		id := got.Msg.GetIdentity()
		version := id.GetVersion()
		id.Status = status
		resp, err := c.admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: id, ExpectVersion: version}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			identityText(t, resp.Msg.GetIdentity())
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

func (a *app) identityPutCmd() *cobra.Command {
	var (
		id            writv1.Identity
		attrs         []string
		disabled      bool
		expectVersion uint64
		createOnly    bool
	)
	cmd := &cobra.Command{
		Use:   "put ID --kind KIND --owner OWNER --env ENV",
		Short: "Create or replace an identity",
		Example: `  writ identity put ci/deploy-api --kind ci_job --owner team-platform --env prod \
      --attr repo=github.com/acme/api --description "deploys the api service"`,
		Args: exactArgs("ID"),
	}
	f := cmd.Flags()
	f.StringVar(&id.Kind, "kind", "", "workload, ci_job, agent or service_account")
	f.StringVar(&id.Owner, "owner", "", "accountable team or person")
	f.StringVar(&id.Environment, "env", "", "environment: prod, staging, dev, ...")
	f.StringArrayVar(&attrs, "attr", nil, "attribute key=value (repeatable)")
	f.StringVar(&id.Description, "description", "", "free text")
	f.BoolVar(&disabled, "disabled", false, "store the identity disabled (it can hold no leases)")
	f.Uint32Var(&id.MaxLiveLeases, "max-live-leases", 0, "live leases the identity may hold at once (0: no limit)")
	f.Uint64Var(&expectVersion, "expect-version", 0, "fail unless the stored version is this (optimistic concurrency)")
	f.BoolVar(&createOnly, "create-only", false, "fail if the identity exists")
	for _, n := range []string{"kind", "owner", "env"} {
		_ = cmd.MarkFlagRequired(n)
	}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		m, err := parseKVs(attrs)
		if err != nil {
			return flagErr("attr", err)
		}
		id.Id, id.Attributes, id.Status = args[0], m, "active"
		if disabled {
			id.Status = "disabled"
		}
		resp, err := c.admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{
			Identity: &id, ExpectVersion: expectVersion, CreateOnly: createOnly,
		}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			identityText(t, resp.Msg.GetIdentity())
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

func (a *app) identityGetCmd() *cobra.Command {
	var rf readFlags
	cmd := &cobra.Command{Use: "get ID", Short: "Show one identity", Args: exactArgs("ID")}
	rf.add(cmd)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.admin.GetIdentity(ctx, connect.NewRequest(&writv1.GetIdentityRequest{Id: args[0], Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) { identityText(t, resp.Msg.GetIdentity()) })
	})
	return cmd
}

func (a *app) identityListCmd() *cobra.Command {
	var rf readFlags
	cmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List identities", Args: noArgs}
	rf.add(cmd)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.admin.ListIdentities(ctx, connect.NewRequest(&writv1.ListIdentitiesRequest{Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			rows := make([][]string, 0, len(resp.Msg.GetIdentities()))
			for _, i := range resp.Msg.GetIdentities() {
				rows = append(rows, []string{i.GetId(), i.GetKind(), i.GetOwner(), i.GetEnvironment(), i.GetStatus(), u64(i.GetEpoch()), u64(i.GetVersion())})
			}
			t.table([]string{"ID", "KIND", "OWNER", "ENV", "STATUS", "EPOCH", "VERSION"}, rows)
		})
	})
	return cmd
}

func (a *app) identityDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "delete ID", Aliases: []string{"rm"}, Short: "Delete an identity", Args: exactArgs("ID")}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		resp, err := c.admin.DeleteIdentity(ctx, connect.NewRequest(&writv1.DeleteIdentityRequest{Id: args[0]}))
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

func identityText(t *textOut, i *writv1.Identity) {
	t.kv("id", i.GetId())
	t.kv("kind", i.GetKind())
	t.kv("owner", i.GetOwner())
	t.kv("environment", i.GetEnvironment())
	t.kv("status", i.GetStatus())
	t.kvIf("attributes", pairs(i.GetAttributes()))
	t.kvIf("description", i.GetDescription())
	if i.GetMaxLiveLeases() != 0 {
		t.kv("max live leases", i.GetMaxLiveLeases())
	}
	t.kv("epoch", i.GetEpoch())
	t.kv("version", i.GetVersion())
	t.kv("created", t.time(i.GetCreatedAt()))
	t.kv("updated", t.time(i.GetUpdatedAt()))
}
