package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// bootstrapExpectLoop forms the cluster once BootstrapExpect servers see
// each other in gossip (Consul's bootstrap_expect). It runs only when the
// data dir held no Raft state at start, and gives up for good as soon as
// any server it sees already belongs to a cluster (then the leader's
// reconcile adds this node instead), so a cluster forms once: restarted
// nodes have state, newcomers find a configured peer.
func (n *Node) bootstrapExpectLoop() {
	defer n.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for attempt := 0; ; attempt++ {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		done, err := n.tryBootstrapExpect(n.ctx)
		if done {
			return
		}
		if err != nil && attempt%25 == 0 {
			n.log.Info("waiting to bootstrap", "expect", n.cfg.BootstrapExpect, "status", err)
		}
	}
}

// tryBootstrapExpect makes one attempt; done reports that nothing is left
// to do (bootstrapped, or a cluster exists already).
func (n *Node) tryBootstrapExpect(ctx context.Context) (done bool, err error) {
	if n.departing() {
		return true, nil
	}
	// Joined meanwhile (the leader of an existing cluster added us).
	if cf := n.raft.GetConfiguration(); cf.Error() == nil && len(cf.Configuration().Servers) > 0 {
		return true, nil
	}
	if n.cfg.AdminToken == "" {
		// Whoever leads first proposes the bootstrap entry with its admin token.
		return false, errors.New("no admin token: this server cannot bootstrap (give every server the cluster's admin token)")
	}
	expect := uint32(n.cfg.BootstrapExpect)
	live := n.gossip.states()
	var peers []member
	for _, m := range n.members.snapshot() {
		if _, ok := live[m.Name]; !ok || m.Meta == nil || m.Name == n.cfg.NodeID {
			continue
		}
		if e := m.Meta.GetBootstrapExpect(); e != 0 && e != expect {
			return false, fmt.Errorf("server %s expects %d servers, this one %d: fix the flags", m.Name, e, expect)
		}
		peers = append(peers, m)
	}
	if len(peers)+1 < int(expect) {
		return false, fmt.Errorf("%d of %d servers in gossip", len(peers)+1, expect)
	}
	servers := []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.NodeID), Address: raft.ServerAddress(n.RaftAddr())}}
	for _, p := range peers {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := n.peers.memberClient(p.Meta.GetRaftAddr()).RaftStats(cctx, connect.NewRequest(&writv1.RaftStatsRequest{}))
		cancel()
		if err != nil {
			return false, fmt.Errorf("ask %s whether it has a cluster: %w", p.Name, err)
		}
		if resp.Msg.GetNodeId() != p.Name {
			return false, fmt.Errorf("cluster port %s answers as %q, gossip says %q", p.Meta.GetRaftAddr(), resp.Msg.GetNodeId(), p.Name)
		}
		if resp.Msg.GetHasConfiguration() {
			n.log.Info("a server already belongs to a cluster; not bootstrapping (the leader adds this node)", "server", p.Name)
			return true, nil
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.Name), Address: raft.ServerAddress(p.Meta.GetRaftAddr())})
	}
	// Every expecting server computes the same configuration from the same
	// gossip view; raft treats identical bootstraps as one.
	slices.SortFunc(servers, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return false, fmt.Errorf("bootstrap: %w", err)
	}
	n.log.Info("bootstrapped cluster", "expect", expect, "servers", len(servers))
	return true, nil
}
