package node

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/durationpb"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// statsTimeout bounds each peer's RaftStats call while assembling a status.
const statsTimeout = 1500 * time.Millisecond

// RaftStats reports this server's own Raft state (MemberService). It
// answers before bootstrap: has_configuration tells bootstrap-expect
// whether this node already belongs to a cluster.
func (n *Node) RaftStats(context.Context) (*writv1.RaftStatsResponse, error) {
	out := &writv1.RaftStatsResponse{NodeId: n.cfg.NodeID, Stats: n.localStats(), ClusterId: n.fsm.View().ClusterID()}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, err
	}
	for _, s := range cf.Configuration().Servers {
		out.HasConfiguration = true
		if s.Suffrage == raft.Voter {
			out.Voters = append(out.Voters, string(s.ID))
		}
	}
	_, id := n.raft.LeaderWithID()
	out.LeaderId = string(id)
	return out, nil
}

func (n *Node) localStats() *writv1.ServerStats {
	st := &writv1.ServerStats{
		State:        stateName(n.raft.State()),
		Term:         parseUint(n.raft.Stats()["term"]),
		LastLogIndex: n.raft.LastIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.AppliedIndex(),
		FsmVersion:   n.fsmVersion(),
	}
	if n.raft.State() == raft.Leader {
		st.LastContact = durationpb.New(0)
	} else if lc := n.raft.LastContact(); !lc.IsZero() {
		st.LastContact = durationpb.New(time.Since(lc))
	}
	return st
}

// Status reports this node's view of the cluster: its own Raft state, every
// server in the Raft configuration and every gossip member, each with its
// gossip state and its own Raft stats (asked over the cluster port, in
// parallel, each bounded by statsTimeout), and its lag behind the leader's
// last log index. A member that cannot be reached is listed with
// stats_error.
func (n *Node) Status(ctx context.Context) (*writv1.StatusResponse, error) {
	view := n.fsm.View()
	local := n.localStats()
	out := &writv1.StatusResponse{
		NodeId:          n.cfg.NodeID,
		ClusterId:       view.ClusterID(),
		State:           local.GetState(),
		Term:            local.GetTerm(),
		AppliedIndex:    local.GetAppliedIndex(),
		CommitIndex:     local.GetCommitIndex(),
		LastLogIndex:    local.GetLastLogIndex(),
		Version:         "dev",
		GossipEncrypted: n.gossip != nil && len(n.cfg.GossipKey) > 0,
		ClusterTls:      n.cfg.ClusterTLS.enabled(),
	}
	leaderAddr, leaderID := n.raft.LeaderWithID()
	out.LeaderId = string(leaderID)
	if node, ok := view.Node(string(leaderID)); ok {
		out.LeaderApiAddr = node.GetApiAddr()
	}
	if lc := n.raft.LastContact(); !lc.IsZero() && n.raft.State() != raft.Leader {
		out.LastContact = durationpb.New(time.Since(lc))
	}
	if n.raft.State() == raft.Leader {
		out.ClusterFsmVersion = n.ClusterFSMVersion()
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, err
	}
	byID := map[string]*writv1.Member{}
	for _, srv := range cf.Configuration().Servers {
		m := &writv1.Member{Id: string(srv.ID), RaftAddr: string(srv.Address), Leader: srv.ID == leaderID, Suffrage: "nonvoter"}
		if srv.Suffrage == raft.Voter {
			m.Suffrage = "voter"
		}
		byID[m.Id] = m
		out.Members = append(out.Members, m)
	}
	if n.gossip != nil {
		for _, gm := range n.members.snapshot() {
			m, ok := byID[gm.Name]
			if !ok {
				m = &writv1.Member{Id: gm.Name, Suffrage: "none"}
				if gm.Meta != nil {
					m.RaftAddr = gm.Meta.GetRaftAddr()
				}
				byID[gm.Name] = m
				out.Members = append(out.Members, m)
			}
			m.GossipAddr = gm.GossipAddr
			m.GossipState = gm.State
			if m.ApiAddr == "" && gm.Meta != nil {
				m.ApiAddr = gm.Meta.GetApiAddr()
			}
		}
		if self, ok := byID[n.cfg.NodeID]; ok && self.GossipState == "" {
			self.GossipState, self.GossipAddr = gossipAlive, n.GossipAddr()
		}
	}
	for _, m := range out.Members {
		if node, ok := view.Node(m.Id); ok && node.GetApiAddr() != "" {
			m.ApiAddr = node.GetApiAddr()
		}
	}
	n.fillStats(ctx, out.Members, local)
	var leaderLast uint64
	for _, m := range out.Members {
		if m.Leader || (leaderAddr != "" && m.RaftAddr == string(leaderAddr) && m.Id == string(leaderID)) {
			leaderLast = m.GetStats().GetLastLogIndex()
		}
	}
	if leaderLast > 0 {
		for _, m := range out.Members {
			if st := m.GetStats(); st != nil && st.GetLastLogIndex() <= leaderLast {
				st.Lag = leaderLast - st.GetLastLogIndex()
			}
		}
	}
	return out, nil
}

// fillStats asks every member with a cluster address for its Raft stats.
func (n *Node) fillStats(ctx context.Context, members []*writv1.Member, local *writv1.ServerStats) {
	var wg sync.WaitGroup
	for _, m := range members {
		if m.Id == n.cfg.NodeID {
			m.Stats = local
			continue
		}
		if m.RaftAddr == "" || m.GossipState == gossipLeft || m.GossipState == gossipDead {
			if m.GossipState == gossipLeft || m.GossipState == gossipDead {
				m.StatsError = "not asked: " + m.GossipState + " in gossip"
			}
			continue
		}
		wg.Add(1)
		go func(m *writv1.Member) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, statsTimeout)
			defer cancel()
			resp, err := n.peers.memberClient(m.RaftAddr).RaftStats(cctx, connect.NewRequest(&writv1.RaftStatsRequest{}))
			switch {
			case err != nil:
				m.StatsError = "unreachable: " + connect.CodeOf(err).String()
			case resp.Msg.GetNodeId() != m.Id:
				m.StatsError = "cluster port answers as " + resp.Msg.GetNodeId()
			default:
				m.Stats = resp.Msg.GetStats()
			}
		}(m)
	}
	wg.Wait()
}
