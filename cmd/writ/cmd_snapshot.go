package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Back up and restore the cluster's replicated state (admin)"}
	save := &cobra.Command{
		Use:     "save FILE",
		Short:   "Stream a consistent snapshot from a live node into FILE",
		Example: "  writ snapshot save backup.snap",
		Args:    exactArgs("FILE"),
	}
	save.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		stream, err := c.cluster.SnapshotSave(ctx, connect.NewRequest(&writv1.SnapshotSaveRequest{}))
		if err != nil {
			return err
		}
		tmp := args[0] + ".partial"
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer os.Remove(tmp)
		var n int64
		for stream.Receive() {
			w, err := f.Write(stream.Msg().GetChunk())
			n += int64(w)
			if err != nil {
				f.Close()
				return err
			}
		}
		if err := stream.Err(); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp, args[0]); err != nil {
			return err
		}
		return p.emit(&writv1.SnapshotRestoreResponse{}, func(t *textOut) {
			t.kv("saved", fmt.Sprintf("%s (%d bytes)", args[0], n))
		})
	})
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the whole cluster's state with a snapshot (send it to the leader)",
		Long: `Upload FILE to the leader, which validates it and installs it through Raft on
every node. Everything written after the snapshot was taken is gone afterwards.`,
		Example: "  writ snapshot restore backup.snap --addr <leader>",
		Args:    exactArgs("FILE"),
	}
	restore.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		up := c.cluster.SnapshotRestore(ctx)
		buf := make([]byte, 256<<10)
		for {
			n, rerr := f.Read(buf)
			if n > 0 {
				if err := up.Send(&writv1.SnapshotRestoreRequest{Chunk: buf[:n]}); err != nil {
					break // the server's answer (below) says why
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return rerr
			}
		}
		resp, err := up.CloseAndReceive()
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			t.kv("restored", args[0])
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	cmd.AddCommand(save, restore)
	return cmd
}
