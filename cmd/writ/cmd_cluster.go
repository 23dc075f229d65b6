package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func (a *app) statusCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "status", Short: "Show the node's Raft state and the cluster's members", Args: noArgs}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		resp, err := c.cluster.Status(ctx, connect.NewRequest(&writv1.StatusRequest{}))
		if err != nil {
			return err
		}
		m := resp.Msg
		return p.emit(m, func(t *textOut) {
			t.kv("node", fmt.Sprintf("%s (%s)", m.GetNodeId(), orDash(m.GetState())))
			t.kvIf("cluster", m.GetClusterId())
			leader := orDash(m.GetLeaderId())
			if m.GetLeaderApiAddr() != "" {
				leader += " at " + m.GetLeaderApiAddr()
			}
			t.kv("leader", leader)
			t.kv("term", m.GetTerm())
			t.kv("applied index", m.GetAppliedIndex())
			t.kv("commit index", m.GetCommitIndex())
			t.kv("last log index", m.GetLastLogIndex())
			if lc := m.GetLastContact(); lc != nil {
				t.kv("last contact", lc.AsDuration().Round(time.Millisecond).String()+" ago")
			}
			t.kvIf("version", m.GetVersion())
			if v := m.GetClusterFsmVersion(); v != 0 {
				t.kv("cluster fsm", fmt.Sprintf("version %d (what the leader writes for: the oldest server's)", v))
			}
			t.kv("gossip key", yesNo(m.GetGossipEncrypted()))
			t.kv("cluster tls", yesNo(m.GetClusterTls()))
			t.line("")
			rows := make([][]string, 0, len(m.GetMembers()))
			for _, mb := range m.GetMembers() {
				rows = append(rows, memberRow(mb))
			}
			t.table([]string{"MEMBER", "GOSSIP", "SUFFRAGE", "STATE", "APPLIED", "LAG", "CONTACT", "FSM", "RAFT ADDR", "API ADDR", "LEADER"}, rows)
		})
	})
	return cmd
}

// memberRow is one line of the status table: gossip state, suffrage, and the
// member's own Raft stats (or why they are missing).
func memberRow(mb *writv1.Member) []string {
	mark := ""
	if mb.GetLeader() {
		mark = "*"
	}
	state, applied, lag, contact, version := "", "", "", "", ""
	if st := mb.GetStats(); st != nil {
		state, applied, lag = st.GetState(), u64(st.GetAppliedIndex()), u64(st.GetLag())
		if v := st.GetFsmVersion(); v != 0 {
			version = strconv.FormatUint(uint64(v), 10)
		}
		if lc := st.GetLastContact(); lc != nil {
			contact = lc.AsDuration().Round(time.Millisecond).String()
		}
	} else if e := mb.GetStatsError(); e != "" {
		state = strings.SplitN(e, ":", 2)[0]
	}
	return []string{mb.GetId(), mb.GetGossipState(), mb.GetSuffrage(), state, applied, lag, contact, version, mb.GetRaftAddr(), mb.GetApiAddr(), mark}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (a *app) joinCmd() *cobra.Command {
	var req writv1.JoinRequest
	cmd := &cobra.Command{
		Use:   "join [ADDR] --node-id ID --raft-addr HOST:PORT --api-addr HOST:PORT",
		Short: "Add a server to the cluster as a Raft voter (admin)",
		Long: `Ask the cluster, through the member at ADDR (default: --addr), to add the
server NODE as a voter. A follower's "not leader" answer is followed to the
leader once. Servers started with --join do this themselves.`,
		Example: `  writ join 127.0.0.1:7400 --node-id n2 --raft-addr 127.0.0.1:7411 --api-addr 127.0.0.1:7410`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one argument (the member to ask)", cmd.CommandPath())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.NodeId, "node-id", "", "the new server's node id")
	f.StringVar(&req.RaftAddr, "raft-addr", "", "the new server's Raft address (host:port)")
	f.StringVar(&req.ApiAddr, "api-addr", "", "the new server's API address (host:port)")
	for _, n := range []string{"node-id", "raft-addr", "api-addr"} {
		_ = cmd.MarkFlagRequired(n)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		for name, v := range map[string]string{"raft-addr": req.RaftAddr, "api-addr": req.ApiAddr} {
			if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
				return usagef("--%s %q: want host:port", name, v)
			}
		}
		if len(args) == 1 {
			a.addr = args[0]
		}
		return a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
			resp, err := followLeader(ctx, a, c, func(ctx context.Context, c *clients) (*connect.Response[writv1.JoinResponse], error) {
				return c.cluster.Join(ctx, connect.NewRequest(&req))
			})
			if err != nil {
				return err
			}
			return p.emit(resp.Msg, func(t *textOut) {
				t.kv("joined", req.GetNodeId())
				t.kv("index", resp.Msg.GetIndex())
			})
		})(cmd, args)
	}
	return cmd
}

func (a *app) leaveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "leave [NODE_ID]",
		Short: "Make the node at --addr leave the cluster gracefully, or remove a gone server (admin)",
		Long: `Without an argument, the node at --addr departs gracefully: if it leads, it
hands leadership to another voter; it leaves gossip; the leader removes it
from the Raft voters and the node table; then the node's server process
exits. Run it before decommissioning a server.

With NODE_ID, the leader removes that server from the Raft configuration
(like a force-leave): for a server that is gone for good. A server that is
still alive in gossip is refused (the leader would add it straight back):
run ` + "`writ leave`" + ` against it instead.`,
		Example: `  writ leave --addr 10.0.0.3:7400     # n3 departs and stops
  writ leave n3                         # remove n3, which is dead`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one argument (the node id to remove)", cmd.CommandPath())
			}
			return nil
		},
	}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		if len(args) == 0 {
			resp, err := c.cluster.Leave(ctx, connect.NewRequest(&writv1.LeaveRequest{Self: true}))
			if err != nil {
				return err
			}
			return p.emit(resp.Msg, func(t *textOut) {
				t.kv("left", "the node at "+c.baseURL+" left the cluster and is stopping")
				t.kv("index", resp.Msg.GetIndex())
			})
		}
		resp, err := followLeader(ctx, a, c, func(ctx context.Context, c *clients) (*connect.Response[writv1.LeaveResponse], error) {
			return c.cluster.Leave(ctx, connect.NewRequest(&writv1.LeaveRequest{NodeId: args[0]}))
		})
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			t.kv("removed", args[0])
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

// followLeader runs call; when the node answers Unavailable/not_leader with
// the leader's address, it runs call once more against the leader.
func followLeader[T any](ctx context.Context, a *app, c *clients, call func(context.Context, *clients) (*connect.Response[T], error)) (*connect.Response[T], error) {
	resp, err := call(ctx, c)
	leader := leaderHint(err)
	if leader == "" {
		return resp, err
	}
	base, nerr := normalizeAddr(leader)
	if nerr != nil || base == c.baseURL {
		return resp, err
	}
	fmt.Fprintf(a.stderr, "following the leader at %s\n", base)
	p, _ := parseProtocol(a.protocol)
	token := a.token
	if token == "" {
		token = a.getenv(envToken)
	}
	return call(ctx, newClients(clientConfig{BaseURL: base, Token: token, Protocol: p}))
}

// leaderHint returns the leader address of a not_leader error, or "".
func leaderHint(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable {
		return ""
	}
	info := errorInfo(ce)
	if info == nil || info.GetReason() != "not_leader" {
		return ""
	}
	return info.GetMetadata()["leader_addr"]
}
