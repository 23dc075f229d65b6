package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) delegateCmd() *cobra.Command {
	var (
		in             intentFlags
		cred           string
		requestID      string
		ttl            int64
		credentialOnly bool
	)
	cmd := &cobra.Command{
		Use:   "delegate --credential CRED --action A --resource TYPE::ID",
		Short: "Get a child credential for one tool call, narrower than the one you hold",
		Long: `Delegate: present the credential you hold and ask for a child lease for one
action on one resource within its scope, for at most its remaining time, within
the role's delegation depth. Cedar decides with context.delegation (depth,
parent, root, chain). Revoking the parent invalidates the child at once.
A denial exits 3.`,
		Example: `  TOOL=$(writ delegate --credential "$CRED" --action call_tool --resource Tool::refund \
      --resource-attr environment=prod --resource-attr owner=support --resource-attr risk=high \
      --context '{"task_id":"T-42"}' --ttl 30s --credential-only)`,
		Args: noArgs,
	}
	in.add(cmd)
	f := cmd.Flags()
	f.StringVar(&cred, "credential", "", "the parent credential, or - for stdin (env "+envCredential+")")
	secondsFlag(cmd, &ttl, "ttl", "child TTL, e.g. 30s (default: the role's, capped at the parent's remaining time)")
	f.StringVar(&requestID, "request-id", "", "idempotency key: a retry with the same id returns the same child")
	f.BoolVar(&credentialOnly, "credential-only", false, "print only the child credential")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		parent, err := readSecretArg("credential", cred, a.stdin, a.getenv, envCredential)
		if err != nil {
			return flagErr("credential", err)
		}
		action, res, cctx, err := in.parse(a.stdin)
		if err != nil {
			return err
		}
		resp, err := c.lease.Delegate(ctx, connect.NewRequest(&writv1.DelegateRequest{
			Credential: parent,
			Intent:     &writv1.Intent{Action: action, Resource: res, Context: cctx, TtlSeconds: ttl},
			RequestId:  requestID,
		}))
		if err != nil {
			return err
		}
		m := resp.Msg
		allowed := m.GetDecision().GetAllowed() && m.GetCredential() != ""
		if credentialOnly {
			if !allowed {
				ep := &printer{w: a.stderr, format: outputFormat{kind: "text"}, now: a.now}
				_ = ep.emit(m, func(t *textOut) { decisionText(t, m.GetDecision()) })
				return errNegative
			}
			_, err := fmt.Fprintln(a.stdout, m.GetCredential())
			return err
		}
		if err := p.emit(m, func(t *textOut) {
			decisionText(t, m.GetDecision())
			if l := m.GetLease(); l != nil {
				t.kv("lease", l.GetId())
				t.kv("parent", l.GetParent())
				t.kv("depth", l.GetDepth())
				t.kv("expires", t.time(l.GetExpiresAt()))
			}
			if m.GetIndex() != 0 {
				t.kv("index", m.GetIndex())
			}
			if m.GetCredential() != "" {
				t.line("")
				t.line(m.GetCredential())
			}
		}); err != nil {
			return err
		}
		if !allowed {
			return errNegative
		}
		return nil
	})
	return cmd
}

func (a *app) leaseCompleteCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "complete CREDENTIAL|-",
		Short: "End your task: the lease (and everything delegated from it) is unusable at once",
		Long: `Complete: the holder of a credential ends its lease as soon as its task is
done (zero standing privilege). No admin token needed. Returns once every node
in contact with the leader has applied it.`,
		Args: exactArgs("CREDENTIAL"),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		credential, err := readSecretArg("credential", args[0], a.stdin, a.getenv, envCredential)
		if err != nil {
			return &usageError{err: err}
		}
		resp, err := c.lease.Complete(ctx, connect.NewRequest(&writv1.CompleteRequest{Credential: credential, Reason: reason}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			t.kv("completed", "yes")
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

func (a *app) watchCmd() *cobra.Command {
	return group("watch", "Follow changes as they commit", a.watchRevocationsCmd())
}

func (a *app) watchRevocationsCmd() *cobra.Command {
	var (
		after     uint64
		heartbeat bool
	)
	cmd := &cobra.Command{
		Use:   "revocations",
		Short: "Stream revocations as they commit (what a gateway does to drop cached decisions)",
		Long: `WatchRevocations: print every revocation committed after --after (a Raft
index), then each one as it commits, until interrupted. A "reset" line means
the node no longer holds everything after --after: a cache must be dropped
whole. Resume a later run with --after set to the last "up to" index printed.
--timeout does not apply; -o json prints each message as a JSON object.`,
		Example: `  writ watch revocations --after 1200 -o json`,
		Args:    noArgs,
	}
	cmd.Flags().Uint64Var(&after, "after", 0, "resume after this Raft index")
	cmd.Flags().BoolVar(&heartbeat, "heartbeats", false, "also print the heartbeats that carry the applied index")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		p, err := a.out()
		if err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		stream, err := c.lease.WatchRevocations(ctx, connect.NewRequest(&writv1.WatchRevocationsRequest{AfterIndex: after}))
		if err != nil {
			return markRun(err)
		}
		defer func() { _ = stream.Close() }()
		for stream.Receive() {
			m := stream.Msg()
			if len(m.GetEvents()) == 0 && !m.GetResetCache() && !heartbeat {
				continue
			}
			if err := p.emit(m, func(t *textOut) {
				if m.GetResetCache() {
					t.line(fmt.Sprintf("reset: drop every cached decision (up to %d)", m.GetUpToIndex()))
				}
				for _, ev := range m.GetEvents() {
					t.line(fmt.Sprintf("%d\t%s\t%s\t%s", ev.GetIndex(), ev.GetKind(), ev.GetTarget(), ev.GetCommittedAt().AsTime().Format(time.RFC3339)))
				}
				if len(m.GetEvents()) == 0 && !m.GetResetCache() {
					t.line(fmt.Sprintf("up to %d", m.GetUpToIndex()))
				}
			}); err != nil {
				return err
			}
		}
		if err := stream.Err(); err != nil && !errors.Is(ctx.Err(), context.Canceled) {
			return markRun(err)
		}
		return nil
	}
	return cmd
}

func (a *app) keyCmd() *cobra.Command {
	return group("key", "Manage the signing keyring (admin)", a.keyRotateCmd(), a.keyListCmd())
}

func (a *app) keyRotateCmd() *cobra.Command {
	var overlap int64
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Put a new signing key; older keys keep verifying through the overlap, then retire",
		Long: `Rotate the signing key: one replicated entry puts a new key, which signs
every credential from then on, and stamps the older keys to retire after the
overlap (default: the server's, 24h). They stay in the JWKS and keep verifying
until the leader retires them. Make the overlap at least the longest credential
lifetime.`,
		Example: `  writ key rotate --overlap 2h`,
		Args:    noArgs,
	}
	secondsFlag(cmd, &overlap, "overlap", "how long older keys keep verifying, e.g. 2h (default: the server's)")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		resp, err := c.key.RotateSigningKey(ctx, connect.NewRequest(&writv1.RotateSigningKeyRequest{OverlapSeconds: overlap}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			t.kv("kid", resp.Msg.GetKey().GetKid())
			t.kv("created", t.time(resp.Msg.GetKey().GetCreatedAt()))
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

func (a *app) keyListCmd() *cobra.Command {
	var rf readFlags
	cmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List signing keys, newest (the one that signs) first", Args: noArgs}
	rf.add(cmd)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.key.ListSigningKeys(ctx, connect.NewRequest(&writv1.ListSigningKeysRequest{Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			rows := make([][]string, 0, len(resp.Msg.GetKeys()))
			for _, k := range resp.Msg.GetKeys() {
				state := "verifying"
				if k.GetCurrent() {
					state = "signing"
				}
				retire := "-"
				if k.GetRetireAt() != nil {
					retire = t.time(k.GetRetireAt())
				}
				rows = append(rows, []string{k.GetKid(), state, t.time(k.GetCreatedAt()), retire})
			}
			t.table([]string{"KID", "STATE", "CREATED", "RETIRES"}, rows)
		})
	})
	return cmd
}
