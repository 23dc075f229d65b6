package main

import (
	"context"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) policyCmd() *cobra.Command {
	return group("policy", "Manage, test and evaluate Cedar policy sets",
		a.policyPutCmd(), a.policyGetCmd(), a.policyListCmd(), a.policyDeleteCmd(),
		a.policyHistoryCmd(), a.policyRollbackCmd(), a.policyValidateCmd(), a.policyEvalCmd(),
		a.policyTestCmd(), a.policyDiffCmd(), a.policyShadowCmd())
}

func (a *app) policyPutCmd() *cobra.Command {
	var (
		file, description string
		expectVersion     uint64
	)
	cmd := &cobra.Command{
		Use:   "put NAME --file FILE.cedar",
		Short: "Activate a new version of a policy set",
		Long: `Upload Cedar policies as the next version of the policy set NAME (an
environment or namespace such as prod). The server validates and compiles
them, then activates the new version atomically at one Raft index.`,
		Example: `  writ policy put prod --file policies/sets/prod.cedar
  cat prod.cedar | writ policy put prod --file -`,
		Args: exactArgs("NAME"),
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "Cedar source file, or - for stdin")
	f.StringVar(&description, "description", "", "free text")
	f.Uint64Var(&expectVersion, "expect-version", 0, "fail unless the active version is this")
	_ = cmd.MarkFlagRequired("file")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		src, err := readInput(file, a.stdin)
		if err != nil {
			return flagErr("file", err)
		}
		if strings.TrimSpace(string(src)) == "" {
			return usagef("--file %s: no policies in it", displayName(file))
		}
		resp, err := c.admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{
			PolicySet:     &writv1.PolicySet{Name: args[0], Cedar: string(src), Description: description},
			ExpectVersion: expectVersion,
		}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			policyHeader(t, resp.Msg.GetPolicySet())
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

func (a *app) policyGetCmd() *cobra.Command {
	var (
		rf      readFlags
		version uint64
	)
	cmd := &cobra.Command{
		Use:     "get NAME",
		Short:   "Show a policy set and its Cedar source",
		Example: "  writ policy get prod -o field=policySet.cedar > prod.cedar\n  writ policy get prod --version 3",
		Args:    exactArgs("NAME"),
	}
	rf.add(cmd)
	cmd.Flags().Uint64Var(&version, "version", 0, "a version from the history (default: the active one)")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.admin.GetPolicySet(ctx, connect.NewRequest(&writv1.GetPolicySetRequest{Name: args[0], Read: ro, Version: version}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			ps := resp.Msg.GetPolicySet()
			policyHeader(t, ps)
			t.line("")
			t.line(strings.TrimRight(ps.GetCedar(), "\n"))
		})
	})
	return cmd
}

func (a *app) policyListCmd() *cobra.Command {
	var rf readFlags
	cmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List policy sets", Args: noArgs}
	rf.add(cmd)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.admin.ListPolicySets(ctx, connect.NewRequest(&writv1.ListPolicySetsRequest{Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			rows := make([][]string, 0, len(resp.Msg.GetPolicySets()))
			for _, ps := range resp.Msg.GetPolicySets() {
				rows = append(rows, []string{ps.GetName(), u64(ps.GetVersion()), shortTime(ps.GetActivatedAt()), u64(ps.GetActivatedIndex()), ps.GetDescription()})
			}
			t.table([]string{"NAME", "VERSION", "ACTIVATED", "INDEX", "DESCRIPTION"}, rows)
		})
	})
	return cmd
}

func (a *app) policyDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "delete NAME", Aliases: []string{"rm"}, Short: "Delete a policy set", Args: exactArgs("NAME")}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		resp, err := c.admin.DeletePolicySet(ctx, connect.NewRequest(&writv1.DeletePolicySetRequest{Name: args[0]}))
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

func policyHeader(t *textOut, ps *writv1.PolicySet) {
	t.kv("name", ps.GetName())
	t.kv("version", ps.GetVersion())
	t.kvIf("description", ps.GetDescription())
	t.kv("activated", t.time(ps.GetActivatedAt()))
	t.kv("activated index", ps.GetActivatedIndex())
}
