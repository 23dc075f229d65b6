package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) batchAuthorizeCmd() *cobra.Command {
	var (
		rf          readFlags
		cred, items string
	)
	cmd := &cobra.Command{
		Use:   "batch-authorize --credential CRED --items FILE",
		Short: "Check many (credential, action, resource) questions in one call (exit 3 unless all allowed)",
		Long: `Send many Authorize questions in one BatchAuthorize call. Every item is
decided on the same read view; each distinct credential is verified once.

--items is a JSON file (or - for stdin): an array of items, or one item per
line, each {"credential"?, "action", "resource": {"type", "id", "attributes"?},
"context"?}. An item without a credential uses --credential. At most 1,000 items.`,
		Example: `  writ batch-authorize --credential "$CRED" --items - <<'EOF'
  [{"action":"deploy","resource":{"type":"Deployment","id":"api-prod"},"context":{"ticket":"CHG-1"}},
   {"action":"read","resource":{"type":"Secret","id":"db"}}]
  EOF`,
		Args: noArgs,
	}
	rf.add(cmd)
	cmd.Flags().StringVar(&cred, "credential", "", "credential for items that carry none (env "+envCredential+")")
	cmd.Flags().StringVar(&items, "items", "", "JSON file of items, or - for stdin (required)")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		if items == "" {
			return usagef("--items is required")
		}
		if cred == "" {
			cred = a.getenv(envCredential)
		}
		data, err := readInput(items, a.stdin)
		if err != nil {
			return flagErr("items", err)
		}
		list, err := parseBatchItems(data)
		if err != nil {
			return flagErr("items", err)
		}
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.authz.BatchAuthorize(ctx, connect.NewRequest(&writv1.BatchAuthorizeRequest{Credential: cred, Items: list, Read: ro}))
		if err != nil {
			return err
		}
		m := resp.Msg
		allAllowed := true
		rows := make([][]string, 0, len(m.GetResults()))
		for i, r := range m.GetResults() {
			q := "-"
			if i < len(list) {
				q = list[i].GetAction() + " on " + list[i].GetResource().GetType() + "::" + list[i].GetResource().GetId()
			}
			switch {
			case r.GetError() != nil:
				allAllowed = false
				rows = append(rows, []string{strconv.Itoa(i), q, "error", r.GetError().GetCode() + ": " + orDash(r.GetError().GetReason())})
			case r.GetDecision().GetAllowed():
				rows = append(rows, []string{strconv.Itoa(i), q, "allowed", orDash(r.GetDecision().GetReason())})
			default:
				allAllowed = false
				rows = append(rows, []string{strconv.Itoa(i), q, "denied", orDash(r.GetDecision().GetReason())})
			}
		}
		if err := p.emit(m, func(t *textOut) {
			t.table([]string{"#", "question", "result", "why"}, rows)
			t.kv("applied index", m.GetAppliedIndex())
		}); err != nil {
			return err
		}
		if !allAllowed {
			return errNegative
		}
		return nil
	})
	return cmd
}

// parseBatchItems reads a JSON array of items or one JSON item per line.
func parseBatchItems(data []byte) ([]*writv1.BatchAuthorizeItem, error) {
	data = bytes.TrimSpace(data)
	var raws []json.RawMessage
	if bytes.HasPrefix(data, []byte("[")) {
		if err := json.Unmarshal(data, &raws); err != nil {
			return nil, fmt.Errorf("not a JSON array: %v", err)
		}
	} else {
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				raws = append(raws, json.RawMessage(line))
			}
		}
	}
	if len(raws) == 0 {
		return nil, fmt.Errorf("no items")
	}
	out := make([]*writv1.BatchAuthorizeItem, 0, len(raws))
	for i, raw := range raws {
		it := &writv1.BatchAuthorizeItem{}
		if err := protojson.Unmarshal(raw, it); err != nil {
			return nil, fmt.Errorf("item %d: %v", i, err)
		}
		out = append(out, it)
	}
	return out, nil
}
