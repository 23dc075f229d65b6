package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/audit"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) auditCmd() *cobra.Command {
	return group("audit", "Verify, search and follow the audit log (admin)",
		a.auditVerifyCmd(), a.auditHashCmd(), a.auditConfigCmd(), a.auditWatchCmd(), a.auditCheckpointsCmd())
}

func (a *app) auditVerifyCmd() *cobra.Command {
	var checkpoints string
	var rotated, allowRestarts bool
	cmd := &cobra.Command{
		Use:   "verify FILE...",
		Short: "Check audit files' hash chains (and the checkpoints the cluster committed)",
		Long: `Check that audit files were not edited, cut, reordered or spliced.

Give one stream's files oldest first (rotated files, then the current one);
they are read as one chain. Each record's hash covers its bytes and the
previous record's hash, so an edit, a removed or reordered record breaks the
chain at that line. With a reachable node (--addr, admin token), the chain
heads the cluster committed through Raft are checked too: a record whose hash
disagrees, or a file that ends before a committed head (its tail removed),
fails.

Exit codes: 0 intact, 3 tampered or malformed, 1 could not check.`,
		Example: `  writ audit verify /var/lib/writ/audit/workload.log
  writ audit verify --checkpoints require human.log.20260101T000000Z human.log`,
		Args: cobra.MinimumNArgs(1),
	}
	cmd.Flags().StringVar(&checkpoints, "checkpoints", "auto", "auto (check them when a node answers), require, or off")
	cmd.Flags().BoolVar(&rotated, "rotated", false, "the files are an older part of the chain: committed heads past their end prove nothing")
	cmd.Flags().BoolVar(&allowRestarts, "allow-restarts", false, "accept chains restarting at seq 1 (stdout sinks restart with the process)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch checkpoints {
		case "auto", "require", "off":
		default:
			return usagef("--checkpoints %q: want auto, require or off", checkpoints)
		}
		p, err := a.out()
		if err != nil {
			return err
		}
		var data bytes.Buffer
		for _, f := range args {
			b, err := os.ReadFile(f)
			if err != nil {
				return markRun(err)
			}
			data.Write(b)
			if len(b) > 0 && b[len(b)-1] != '\n' {
				data.WriteByte('\n')
			}
		}
		opts := audit.VerifyOptions{NotNewest: rotated, AllowRestarts: allowRestarts}
		note := "not checked (--checkpoints off)"
		if checkpoints != "off" {
			cps, err := a.fetchCheckpoints(cmd.Context())
			switch {
			case err == nil:
				opts.Checkpoints = cps
				note = fmt.Sprintf("%d committed heads fetched", len(cps))
			case checkpoints == "require":
				return markRun(fmt.Errorf("fetch checkpoints: %w", err))
			default:
				note = "not checked (no node answered: " + describeError(err) + ")"
			}
		}
		reports, verr := audit.Verify(&data, opts)
		if verr != nil {
			fmt.Fprintf(a.stderr, "TAMPERED: %v\n", verr)
			return errNegative
		}
		var chains []any
		for _, r := range reports {
			chains = append(chains, map[string]any{
				"node": r.Node, "stream": string(r.Stream), "records": float64(r.Records), "first_seq": float64(r.First), "last_seq": float64(r.Last),
				"last_hash": r.LastHash, "anchor": r.Anchor, "checkpoints_matched": float64(r.Checked), "dropped": float64(r.Gaps), "filtered": float64(r.Filtered),
			})
		}
		out, err := structpb.NewStruct(map[string]any{"result": "intact", "checkpoints": note, "chains": chains})
		if err != nil {
			return markRun(err)
		}
		return p.emit(out, func(t *textOut) {
			t.kv("result", "intact")
			t.kv("checkpoints", note)
			var rows [][]string
			for _, r := range reports {
				anchor := "start of chain"
				if r.Anchor != "" {
					anchor = "continues " + r.Anchor[:12]
				}
				rows = append(rows, []string{r.Node, string(r.Stream), fmt.Sprint(r.Records), fmt.Sprintf("%d..%d", r.First, r.Last),
					anchor, fmt.Sprint(r.Checked), fmt.Sprint(r.Gaps), fmt.Sprint(r.Filtered)})
			}
			t.table([]string{"NODE", "STREAM", "RECORDS", "SEQ", "ANCHOR", "CHECKPOINTS OK", "DROPPED (GAPS)", "FILTERED"}, rows)
		})
	}
	return cmd
}

func (a *app) fetchCheckpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx, a.timeout)
	defer cancel()
	resp, err := c.audit.ListAuditCheckpoints(ctx, connect.NewRequest(&writv1.ListAuditCheckpointsRequest{}))
	if err != nil {
		return nil, err
	}
	var out []audit.Checkpoint
	for _, cp := range resp.Msg.GetCheckpoints() {
		out = append(out, audit.Checkpoint{Node: cp.GetNodeId(), Stream: audit.Stream(cp.GetStream()), Seq: cp.GetSeq(), Hash: cp.GetHash(), Index: cp.GetIndex()})
	}
	return out, nil
}

func (a *app) auditHashCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hash VALUE",
		Short: "Print the keyed hash under which audit records show a secret",
		Long: `Audit records never hold secret ids, tokens or credentials; where a record
must refer to one (a failed login, an admin, a credential that did not
verify) it holds HMAC-SHA256 of it with the cluster's audit key. This asks a
node for that hash, so you can grep the log for a secret you hold. Pass - to
read the value from stdin (keeps it out of shell history).`,
		Example: `  writ audit hash - < secret.txt
  grep "$(writ audit hash - < secret.txt)" /var/lib/writ/audit/workload.log`,
		Args: exactArgs("VALUE"),
	}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		v := args[0]
		if v == "-" {
			b, err := io.ReadAll(io.LimitReader(a.stdin, 64<<10+1))
			if err != nil {
				return err
			}
			v = strings.TrimRight(string(b), "\r\n")
		}
		resp, err := c.audit.HashAuditValue(ctx, connect.NewRequest(&writv1.HashAuditValueRequest{Value: v}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) { t.line(resp.Msg.GetHash()) })
	})
	return cmd
}

func (a *app) auditConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show a node's effective audit configuration (sinks, durability, filters)",
		Args:  noArgs,
	}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		resp, err := c.audit.GetAuditConfig(ctx, connect.NewRequest(&writv1.GetAuditConfigRequest{}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			t.line("# effective audit configuration of node " + resp.Msg.GetNodeId())
			t.line(strings.TrimRight(resp.Msg.GetYaml(), "\n"))
		})
	})
	return cmd
}

func (a *app) auditWatchCmd() *cobra.Command {
	var streams []string
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Follow a node's audit records as they are written (JSON lines on stdout)",
		Long: `Print each audit record the node writes, as the exact chained JSON line,
until interrupted. A forwarder can pipe this into its shipper and still
verify the chain. Lines the node could not deliver because this watcher fell
behind are reported on stderr as a gap. --timeout does not apply.`,
		Example: `  writ audit watch --stream human`,
		Args:    noArgs,
	}
	cmd.Flags().StringSliceVar(&streams, "stream", nil, "human, workload or agent (repeatable; default all)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		st, err := c.audit.WatchAudit(cmd.Context(), connect.NewRequest(&writv1.WatchAuditRequest{Streams: streams}))
		if err != nil {
			return markRun(err)
		}
		defer st.Close()
		w := bufio.NewWriter(a.stdout)
		for st.Receive() {
			switch item := st.Msg().GetItem().(type) {
			case *writv1.WatchAuditResponse_Record:
				w.WriteString(item.Record)
				w.WriteByte('\n')
			case *writv1.WatchAuditResponse_Gap:
				w.Flush()
				fmt.Fprintf(a.stderr, "gap: %d records not delivered (%s)\n", item.Gap.GetDropped(), item.Gap.GetReason())
			}
			if err := w.Flush(); err != nil {
				return markRun(err)
			}
		}
		if err := st.Err(); err != nil && !errors.Is(err, context.Canceled) && cmd.Context().Err() == nil {
			return markRun(err)
		}
		return nil
	}
	return cmd
}

func (a *app) auditCheckpointsCmd() *cobra.Command {
	var nodeID string
	cmd := &cobra.Command{
		Use:   "checkpoints",
		Short: "List the audit chain heads the cluster committed",
		Args:  noArgs,
	}
	cmd.Flags().StringVar(&nodeID, "node", "", "only this node's")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		resp, err := c.audit.ListAuditCheckpoints(ctx, connect.NewRequest(&writv1.ListAuditCheckpointsRequest{NodeId: nodeID}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			var rows [][]string
			for _, cp := range resp.Msg.GetCheckpoints() {
				rows = append(rows, []string{cp.GetNodeId(), cp.GetStream(), fmt.Sprint(cp.GetSeq()), cp.GetHash()[:16], fmt.Sprint(cp.GetIndex())})
			}
			t.table([]string{"NODE", "STREAM", "SEQ", "HASH", "RAFT INDEX"}, rows)
		})
	})
	return cmd
}
