package node_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
)

// TestAuditCheckpointsReplicate: every node, follower or leader, commits
// its audit chain heads through Raft, and every node holds every node's
// checkpoints, matching that node's durable heads.
func TestAuditCheckpointsReplicate(t *testing.T) {
	t.Parallel()
	c := nodetest.New(t, 3, nodetest.Options{Configure: func(m *nodetest.Member, cfg *node.Config) {
		cfg.Audit = &audit.Config{Dir: filepath.Join(m.DataDir, "audit"), CheckpointInterval: 200 * time.Millisecond}
	}})
	nodetest.Eventually(t, 30*time.Second, "every node's checkpoints on every node", func() error {
		for _, holder := range c.Members {
			view := holder.Node.FSM().View()
			for _, m := range c.Members {
				n, ok := view.Node(m.ID)
				if !ok {
					return fmt.Errorf("%s does not know %s", holder.ID, m.ID)
				}
				heads := map[string]audit.Head{}
				for _, h := range m.Node.Audit().Heads() {
					heads[string(h.Stream)] = h
				}
				got := map[string]bool{}
				for _, cp := range n.GetAuditCheckpoints() {
					if h := heads[cp.GetStream()]; h.Seq == cp.GetSeq() && h.Hash != cp.GetHash() {
						return fmt.Errorf("%s's %s checkpoint at seq %d disagrees with its chain", m.ID, cp.GetStream(), cp.GetSeq())
					}
					got[cp.GetStream()] = true
				}
				for _, s := range audit.Streams {
					if !got[string(s)] {
						return fmt.Errorf("%s holds no %s checkpoint of %s", holder.ID, s, m.ID)
					}
				}
			}
		}
		return nil
	})
}
