package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/rpc"
)

// SnapshotSave streams a consistent snapshot of the local state, which must
// be fresh (within max staleness of the leader).
func (n *Node) SnapshotSave(ctx context.Context, w io.Writer) error {
	if err := n.fresh(); err != nil {
		return err
	}
	_, err := n.fsm.Snapshot().WriteTo(w)
	return err
}

// SnapshotRestore validates an uploaded snapshot, spools it to the data dir
// and hands it to raft.Restore, which installs it on this leader and then on
// every follower. It returns the index of an entry applied after it.
func (n *Node) SnapshotRestore(ctx context.Context, r io.Reader) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, n.notLeaderError()
	}
	f, err := os.CreateTemp(n.cfg.DataDir, "restore-*.snap")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(f, r)
	if err != nil {
		return 0, fmt.Errorf("receive snapshot: %w", err)
	}
	// Validate before touching the cluster: a scratch FSM must accept it.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if err := fsm.New(fsm.Config{}).Restore(bufio.NewReader(f)); err != nil {
		return 0, fmt.Errorf("%w: %v", rpc.ErrBadSnapshot, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if err := n.raft.Restore(&raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}, f, time.Minute); err != nil {
		return 0, leaderError(err)
	}
	n.log.Warn("cluster state replaced from an uploaded snapshot", "bytes", size)
	// The restored FSM reports the snapshot's old index; an entry after it
	// moves every replica's applied index past the restore.
	id, err := randomHex(randReader, 16)
	if err != nil {
		return 0, err
	}
	results, err := n.Propose(ctx, []*fsmpb.Command{{
		Header: &fsmpb.Header{RequestId: "restore-" + id}, Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}},
	}}, rpc.ProposeOptions{})
	if err != nil {
		return 0, err
	}
	return results[0].GetIndex(), nil
}
