package main

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) leaseCmd() *cobra.Command {
	return group("lease", "Inspect leases (admin); complete your own", a.leaseGetCmd(), a.leaseListCmd(), a.leaseCompleteCmd())
}

func (a *app) leaseGetCmd() *cobra.Command {
	var rf readFlags
	cmd := &cobra.Command{Use: "get ID", Short: "Show one lease", Args: exactArgs("ID")}
	rf.add(cmd)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.admin.GetLease(ctx, connect.NewRequest(&writv1.GetLeaseRequest{Id: args[0], Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) { leaseText(t, resp.Msg.GetLease()) })
	})
	return cmd
}

func (a *app) leaseListCmd() *cobra.Command {
	var (
		rf       readFlags
		identity string
		limit    uint32
	)
	cmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List leases", Args: noArgs}
	rf.add(cmd)
	cmd.Flags().StringVar(&identity, "identity", "", "only this identity's leases")
	cmd.Flags().Uint32Var(&limit, "limit", 0, "at most this many (default: the server's, 1000)")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.admin.ListLeases(ctx, connect.NewRequest(&writv1.ListLeasesRequest{Identity: identity, Limit: limit, Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			rows := make([][]string, 0, len(resp.Msg.GetLeases()))
			for _, l := range resp.Msg.GetLeases() {
				rows = append(rows, []string{l.GetId(), l.GetIdentity(), l.GetRole(), l.GetStatus(), scopeText(l.GetScope()), shortTime(l.GetExpiresAt()), fmt.Sprint(l.GetRenewals())})
			}
			t.table([]string{"ID", "IDENTITY", "ROLE", "STATUS", "SCOPE", "EXPIRES", "RENEWALS"}, rows)
		})
	})
	return cmd
}

// leaseText prints a lease's fields as aligned lines.
func leaseText(t *textOut, l *writv1.Lease) {
	t.kv("lease", l.GetId())
	status := orDash(l.GetStatus())
	if l.GetStatusReason() != "" && l.GetStatusReason() != l.GetStatus() {
		status += " (" + l.GetStatusReason() + ")"
	}
	t.kv("status", status)
	t.kv("identity", l.GetIdentity())
	t.kvIf("role", l.GetRole())
	t.kvIf("owner", l.GetOwner())
	t.kvIf("environment", l.GetEnvironment())
	t.kvIf("auth method", l.GetAuthMethod())
	t.kv("scope", orDash(scopeText(l.GetScope())))
	t.kv("issued", t.time(l.GetIssuedAt()))
	t.kv("expires", t.time(l.GetExpiresAt()))
	t.kv("max expires", t.time(l.GetMaxExpiresAt()))
	t.kv("renewals", l.GetRenewals())
	t.kvIf("parent", l.GetParent())
	if l.GetPolicySet() != "" {
		t.kv("policy set", fmt.Sprintf("%s v%d", l.GetPolicySet(), l.GetPolicyVersion()))
	}
	t.kvIf("decision id", l.GetDecisionId())
	t.kv("issued index", l.GetIssuedIndex())
}

// scopeText renders a scope as "deploy on Deployment::api-prod".
func scopeText(s *writv1.Scope) string {
	if s == nil {
		return ""
	}
	res := make([]string, 0, len(s.GetResources()))
	for _, r := range s.GetResources() {
		res = append(res, resourceRef(r.GetType(), r.GetId()))
	}
	out := strings.Join(s.GetActions(), ",")
	if len(res) > 0 {
		out += " on " + strings.Join(res, ",")
	}
	return out
}

// resourceRef prints TYPE::ID, quoting the id when parseResource would need it.
func resourceRef(typ, id string) string {
	if t, i, err := parseResource(typ + "::" + id); err == nil && t == typ && i == id {
		return typ + "::" + id
	}
	return typ + "::" + fmt.Sprintf("%q", id)
}
