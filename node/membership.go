package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// reconcileLoop runs on every node; only the leader acts. It reconciles on
// every gossip event and every ReconcileInterval.
func (n *Node) reconcileLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.gossip.events:
		}
		if n.raft.State() != raft.Leader || n.departing() {
			continue
		}
		if err := n.reconcile(n.ctx); err != nil && n.ctx.Err() == nil {
			n.log.Warn("reconcile membership", "err", err)
		}
	}
}

// reconcile brings the Raft configuration and the node table in line with
// gossip (leader only): alive servers that are not voters are probed over
// the cluster port and added; servers that left gracefully are removed;
// servers dead for longer than DeadServerGrace are removed while quorum
// stays safe (planDeadRemovals).
func (n *Node) reconcile(ctx context.Context) error {
	view := n.fsm.View()
	if !view.Bootstrapped() {
		return nil // establishLeadership proposes the bootstrap entry first
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	servers := map[string]raft.Server{}
	for _, s := range cf.Configuration().Servers {
		servers[string(s.ID)] = s
	}
	var errs []error
	for _, m := range n.members.snapshot() {
		if m.Meta == nil || m.Name == n.cfg.NodeID {
			continue
		}
		srv, inConf := servers[m.Name]
		state := m.State
		n.log.Debug("reconcile member", "id", m.Name, "gossip", state, "in_raft", inConf)
		switch state {
		case gossipAlive:
			if !inConf || string(srv.Address) != m.Meta.GetRaftAddr() {
				if err := n.addFromGossip(ctx, m, inConf); err != nil {
					errs = append(errs, fmt.Errorf("add %s: %w", m.Name, err))
					continue
				}
			}
			if err := n.registerFromGossip(ctx, view, m); err != nil {
				errs = append(errs, err)
			}
		case gossipLeft, gossipLeaving:
			if inConf && len(servers) > 1 {
				n.log.Info("removing server that left", "id", m.Name)
				if err := n.removeServer(ctx, m.Name); err != nil {
					errs = append(errs, err)
				}
				delete(servers, m.Name)
			}
		}
	}
	if n.cfg.DeadServerGrace > 0 {
		var voters []string
		for id, s := range servers {
			if s.Suffrage == raft.Voter {
				voters = append(voters, id)
			}
		}
		alive := map[string]bool{n.cfg.NodeID: true}
		dead := map[string]time.Time{}
		for _, m := range n.members.snapshot() {
			switch m.State {
			case gossipAlive:
				alive[m.Name] = true
			case gossipDead:
				dead[m.Name] = m.Since
			}
		}
		now := time.Now()
		remove := planDeadRemovals(voters, alive, dead, now, n.cfg.DeadServerGrace, n.cfg.MinQuorum)
		for _, id := range voters {
			if since, ok := dead[id]; ok && now.Sub(since) >= n.cfg.DeadServerGrace && !slices.Contains(remove, id) {
				n.log.Debug("dead server past its grace period kept: removing it would leave no alive majority or fewer voters than min quorum",
					"id", id, "voters", len(voters), "min_quorum", n.cfg.MinQuorum)
			}
		}
		for _, id := range remove {
			n.log.Warn("removing dead server after grace period", "id", id, "grace", n.cfg.DeadServerGrace)
			if err := n.removeServer(ctx, id); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	return errors.Join(errs...)
}

// planDeadRemovals picks the voters dead-server cleanup may remove now:
// those dead in gossip for at least grace, oldest first, but only while a
// strict majority of the current voters is alive (otherwise this leader
// cannot tell failures from a partition it sits on the wrong side of) and
// never below minQuorum voters. alive marks voters alive in gossip; dead
// holds when each dead voter was seen dead. It is a pure function of its
// arguments.
func planDeadRemovals(voters []string, alive map[string]bool, dead map[string]time.Time, now time.Time, grace time.Duration, minQuorum int) []string {
	if grace <= 0 {
		return nil
	}
	healthy := 0
	var eligible []string
	for _, id := range voters {
		if alive[id] {
			healthy++
			continue
		}
		if since, ok := dead[id]; ok && now.Sub(since) >= grace {
			eligible = append(eligible, id)
		}
	}
	if healthy*2 <= len(voters) {
		return nil
	}
	slices.SortFunc(eligible, func(a, b string) int {
		if c := dead[a].Compare(dead[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	remaining := len(voters)
	var out []string
	for _, id := range eligible {
		if remaining-1 < minQuorum {
			break
		}
		out = append(out, id)
		remaining--
	}
	return out
}

// addFromGossip probes a server gossip announced (over the cluster port,
// so under mutual TLS when configured: a node without a valid certificate
// is never added) and adds it as a voter.
func (n *Node) addFromGossip(ctx context.Context, m member, replace bool) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := n.peers.memberClient(m.Meta.GetRaftAddr()).RaftStats(pctx, connect.NewRequest(&writv1.RaftStatsRequest{}))
	cancel()
	if err != nil {
		return fmt.Errorf("probe cluster port %s: %w", m.Meta.GetRaftAddr(), err)
	}
	if got := resp.Msg.GetNodeId(); got != m.Name {
		return fmt.Errorf("cluster port %s answers as %q, gossip says %q", m.Meta.GetRaftAddr(), got, m.Name)
	}
	if theirs, ours := resp.Msg.GetClusterId(), n.fsm.View().ClusterID(); theirs != "" && theirs != ours {
		return fmt.Errorf("server %s belongs to another cluster (%s, this is %s): wipe its data dir to join this one", m.Name, theirs, ours)
	}
	if v := resp.Msg.GetStats().GetFsmVersion(); v < fsm.Version {
		n.log.Warn("server runs an older FSM version; new command types wait for it", "id", m.Name, "fsm_version", v)
	}
	id, addr := raft.ServerID(m.Name), raft.ServerAddress(m.Meta.GetRaftAddr())
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	for _, srv := range cf.Configuration().Servers {
		if srv.Address != addr || srv.ID == id {
			continue
		}
		// A new id at an old address (a server rebuilt under a new name):
		// the old entry goes, unless gossip still sees it alive.
		if n.members.state(string(srv.ID)) == gossipAlive {
			return fmt.Errorf("raft address %s is claimed by %s and %s, both alive", addr, srv.ID, id)
		}
		if err := n.removeServer(ctx, string(srv.ID)); err != nil {
			return err
		}
	}
	if replace {
		if err := n.await(n.raft.RemoveServer(id, 0, 10*time.Second)); err != nil {
			return leaderError(err)
		}
	}
	// Membership the leader changes on its own is audited as the system
	// actor, spooled: cluster healing never waits for the audit log.
	if err := n.auditSystemChange(ctx, false, "AddVoter", "node/"+string(id), "", func() error {
		return n.await(n.raft.AddVoter(id, addr, 0, 10*time.Second))
	}); err != nil {
		return leaderError(err)
	}
	n.log.Info("server added from gossip", "id", m.Name, "raft_addr", m.Meta.GetRaftAddr())
	return nil
}

// registerFromGossip keeps the node table's addresses in line with gossip.
func (n *Node) registerFromGossip(ctx context.Context, view *fsm.View, m member) error {
	want := &fsmpb.Node{Id: m.Name, RaftAddr: m.Meta.GetRaftAddr(), ApiAddr: m.Meta.GetApiAddr(), GossipAddr: m.GossipAddr}
	if old, ok := view.Node(m.Name); ok && sameNode(old, want) {
		return nil
	}
	return n.proposeOne(ctx, registerCommand(want))
}

func sameNode(a, b *fsmpb.Node) bool {
	return a.GetId() == b.GetId() && a.GetApiAddr() == b.GetApiAddr() &&
		a.GetRaftAddr() == b.GetRaftAddr() && a.GetGossipAddr() == b.GetGossipAddr()
}

// removeServer removes a server from the Raft configuration and the node table.
func (n *Node) removeServer(ctx context.Context, id string) error {
	if err := n.auditSystemChange(ctx, false, "RemoveServer", "node/"+id, "", func() error {
		return n.await(n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second))
	}); err != nil {
		return leaderError(err)
	}
	return n.proposeOne(ctx, removeCommand(id))
}

// rejoinLoop keeps gossip connected to every server the node table lists:
// a restarted node finds its peers again (its log names them), and so does
// a node that joined through the API, or one on the healed side of a
// partition (memberlist does not retry dead members by itself).
func (n *Node) rejoinLoop() {
	defer n.wg.Done()
	interval := min(n.cfg.ReconcileInterval, 5*time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.departing() {
			return
		}
		live := n.gossip.states()
		var addrs []string
		for _, nd := range n.fsm.View().Nodes() {
			if nd.GetId() == n.cfg.NodeID || nd.GetGossipAddr() == "" {
				continue
			}
			if _, ok := live[nd.GetId()]; !ok {
				addrs = append(addrs, nd.GetGossipAddr())
			}
		}
		if len(addrs) > 0 {
			if err := n.gossip.join(addrs); err != nil {
				n.log.Debug("gossip rejoin", "err", err)
			}
		}
	}
}
