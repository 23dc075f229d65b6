package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// gnode is one gossip-enabled node run by these tests.
type gnode struct {
	cfg node.Config
	n   *node.Node
}

func reserve(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// gossipConfig is a node on loopback with fast (but -race tolerant)
// failure detection and reconcile.
func gossipConfig(t testing.TB, dir, id string) node.Config {
	t.Helper()
	var logger *slog.Logger
	if os.Getenv("WRIT_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("member", id)
	} else {
		logger = slog.New(slog.DiscardHandler)
	}
	return node.Config{
		NodeID:            id,
		DataDir:           filepath.Join(dir, id),
		APIAddr:           "127.0.0.1:0",
		RaftAddr:          reserve(t),
		GossipAddr:        reserve(t),
		AdminToken:        nodetest.AdminToken,
		MaxStaleness:      time.Second,
		HoldTimeout:       10 * time.Second,
		Logger:            logger,
		RaftLogOutput:     io.Discard,
		ReconcileInterval: 250 * time.Millisecond,
		Gossip: node.GossipTuning{
			ProbeInterval: 250 * time.Millisecond, ProbeTimeout: 200 * time.Millisecond,
			GossipInterval: 50 * time.Millisecond, SuspicionMult: 4, PushPullInterval: 2 * time.Second,
		},
		Raft: node.RaftTuning{
			HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
			LeaderLeaseTimeout: 250 * time.Millisecond, CommitTimeout: 20 * time.Millisecond,
		},
	}
}

func (g *gnode) start(t testing.TB) {
	t.Helper()
	n, err := node.New(g.cfg)
	if err != nil {
		t.Fatalf("new %s: %v", g.cfg.NodeID, err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start %s: %v", g.cfg.NodeID, err)
	}
	g.n = n
	t.Cleanup(func() { _ = n.Close() })
}

func (g *gnode) stop() {
	if g.n != nil {
		_ = g.n.Close()
		g.n = nil
	}
}

// bootstrapExpectCluster starts n nodes with --bootstrap-expect n; node i
// joins through node i-1's gossip address, node 0 through nobody.
func bootstrapExpectCluster(t testing.TB, n int, tweak func(i int, c *node.Config)) []*gnode {
	t.Helper()
	dir := t.TempDir()
	nodes := make([]*gnode, n)
	for i := range nodes {
		cfg := gossipConfig(t, dir, fmt.Sprintf("n%d", i+1))
		cfg.BootstrapExpect = n
		if i > 0 {
			cfg.Join = []string{nodes[i-1].cfg.GossipAddr}
			cfg.AdminToken = nodetest.AdminToken
		}
		if tweak != nil {
			tweak(i, &cfg)
		}
		nodes[i] = &gnode{cfg: cfg}
	}
	for _, g := range nodes {
		g.start(t)
	}
	waitVoters(t, nodes, n)
	return nodes
}

func running(nodes []*gnode) []*gnode {
	var out []*gnode
	for _, g := range nodes {
		if g.n != nil {
			out = append(out, g)
		}
	}
	return out
}

func leaderOf(t testing.TB, nodes []*gnode) *gnode {
	t.Helper()
	var l *gnode
	nodetest.Eventually(t, 30*time.Second, "a leader", func() error {
		for _, g := range running(nodes) {
			if g.n.IsLeader() {
				l = g
				return nil
			}
		}
		return fmt.Errorf("no leader")
	})
	return l
}

// voterIDs is the leader's sorted voter list.
func voterIDs(t testing.TB, g *gnode) []string {
	t.Helper()
	st, err := g.n.RaftStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v := slices.Clone(st.GetVoters())
	slices.Sort(v)
	return v
}

// waitVoters waits until every running node is ready and the leader has
// want voters, each registered with an API address.
func waitVoters(t testing.TB, nodes []*gnode, want int) {
	t.Helper()
	nodetest.Eventually(t, 60*time.Second, fmt.Sprintf("%d voters", want), func() error {
		var leader *gnode
		for _, g := range running(nodes) {
			if err := g.n.Ready(); err != nil {
				return fmt.Errorf("%s: %w", g.cfg.NodeID, err)
			}
			if g.n.IsLeader() {
				leader = g
			}
		}
		if leader == nil {
			return fmt.Errorf("no leader")
		}
		st, err := leader.n.RaftStats(context.Background())
		if err != nil {
			return err
		}
		if len(st.GetVoters()) != want {
			return fmt.Errorf("voters %v", st.GetVoters())
		}
		for _, id := range st.GetVoters() {
			nd, ok := leader.n.FSM().View().Node(id)
			if !ok || nd.GetApiAddr() == "" || nd.GetGossipAddr() == "" {
				return fmt.Errorf("voter %s not registered yet", id)
			}
		}
		return nil
	})
}

func adminClient(g *gnode) writv1connect.AdminServiceClient {
	return writv1connect.NewAdminServiceClient(http.DefaultClient, "http://"+g.n.APIAddr(),
		connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Authorization", "Bearer "+nodetest.AdminToken)
				return next(ctx, req)
			}
		})))
}

// putIdentity writes through g (a follower forwards over the cluster port).
func putIdentity(t testing.TB, g *gnode, id string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := adminClient(g).PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
		Id: id, Kind: "ci_job", Owner: "team-platform", Environment: "prod",
	}}))
	if err != nil {
		t.Fatalf("put identity %s through %s: %v", id, g.cfg.NodeID, err)
	}
	return resp.Msg.GetIndex()
}

func waitApplied(t testing.TB, nodes []*gnode, index uint64) {
	t.Helper()
	for _, g := range running(nodes) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := g.n.FSM().WaitApplied(ctx, index); err != nil {
			cancel()
			t.Fatalf("%s did not apply %d: %v", g.cfg.NodeID, index, err)
		}
		cancel()
	}
}

func clusterIDs(nodes []*gnode) map[string]bool {
	ids := map[string]bool{}
	for _, g := range running(nodes) {
		ids[g.n.FSM().View().ClusterID()] = true
	}
	return ids
}

// TestBootstrapExpect: three servers started with bootstrap-expect 3 form
// exactly one cluster; restarting all of them (still with the flag) does
// not bootstrap again: same cluster id, same state, same voters.
func TestBootstrapExpect(t *testing.T) {
	nodes := bootstrapExpectCluster(t, 3, nil)
	idx := putIdentity(t, nodes[2], "ci/before-restart")
	waitApplied(t, nodes, idx)
	ids := clusterIDs(nodes)
	if len(ids) != 1 {
		t.Fatalf("cluster ids %v, want exactly one", ids)
	}
	want := voterIDs(t, leaderOf(t, nodes))
	if !slices.Equal(want, []string{"n1", "n2", "n3"}) {
		t.Fatalf("voters %v", want)
	}
	for _, g := range nodes {
		g.stop()
	}
	for _, g := range nodes {
		g.start(t)
	}
	waitVoters(t, nodes, 3)
	if got := clusterIDs(nodes); len(got) != 1 || !got[firstKey(ids)] {
		t.Fatalf("after restart cluster ids %v, want %v", got, ids)
	}
	if got := voterIDs(t, leaderOf(t, nodes)); !slices.Equal(got, want) {
		t.Fatalf("after restart voters %v, want %v", got, want)
	}
	waitApplied(t, nodes, idx)
	for _, g := range nodes {
		if _, ok := g.n.FSM().View().Identity("ci/before-restart"); !ok {
			t.Fatalf("%s lost the identity written before the restart", g.cfg.NodeID)
		}
	}
}

func firstKey(m map[string]bool) string {
	for k := range m {
		return k
	}
	return ""
}

// TestGossipMembership walks a server's life: it joins through a
// follower's gossip address (no admin token) and the leader adds it; the
// leader departs gracefully (leadership moves, it is removed, it stops); a
// killed server is removed once dead past the grace period while a
// majority stays alive.
func TestGossipMembership(t *testing.T) {
	nodes := bootstrapExpectCluster(t, 3, func(_ int, c *node.Config) {
		c.DeadServerGrace = time.Second
		c.MinQuorum = 2
	})
	leader := leaderOf(t, nodes)
	var follower *gnode
	for _, g := range nodes {
		if g != leader {
			follower = g
			break
		}
	}

	// Join through any member's gossip address, with no admin token.
	cfg := gossipConfig(t, filepath.Dir(nodes[0].cfg.DataDir), "n4")
	cfg.AdminToken = ""
	cfg.Join = []string{follower.cfg.GossipAddr}
	cfg.DeadServerGrace, cfg.MinQuorum = time.Second, 2
	n4 := &gnode{cfg: cfg}
	n4.start(t)
	nodes = append(nodes, n4)
	waitVoters(t, nodes, 4)
	idx := putIdentity(t, n4, "ci/through-n4")
	waitApplied(t, nodes, idx)

	// Status from a follower: gossip state, voters, stats of every member.
	st, err := follower.n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetMembers()) != 4 {
		t.Fatalf("status lists %d members", len(st.GetMembers()))
	}
	for _, m := range st.GetMembers() {
		if m.GetGossipState() != "alive" || m.GetSuffrage() != "voter" || m.GetStats() == nil {
			t.Fatalf("member %s: gossip %q suffrage %q stats %v (%s)", m.GetId(), m.GetGossipState(), m.GetSuffrage(), m.GetStats(), m.GetStatsError())
		}
	}

	// The leader departs: leadership moves, it is removed, it stops.
	leader = leaderOf(t, nodes)
	if _, err := leader.n.Depart(context.Background()); err != nil {
		t.Fatalf("depart %s: %v", leader.cfg.NodeID, err)
	}
	select {
	case <-leader.n.Departed():
	case <-time.After(30 * time.Second):
		t.Fatal("departed node did not stop")
	}
	gone := leader.cfg.NodeID
	leader.n = nil
	waitVoters(t, nodes, 3)
	newLeader := leaderOf(t, nodes)
	if slices.Contains(voterIDs(t, newLeader), gone) {
		t.Fatalf("%s still a voter after leaving", gone)
	}
	nodetest.Eventually(t, 20*time.Second, gone+" out of the node table", func() error {
		if _, ok := leaderOf(t, nodes).n.FSM().View().Node(gone); ok {
			return fmt.Errorf("%s still in the node table after leaving", gone)
		}
		return nil
	})

	// Kill a follower: it is removed once dead past the grace period
	// (2 of 3 voters alive is a majority, and 2 >= MinQuorum).
	var victim *gnode
	for _, g := range running(nodes) {
		if g != newLeader {
			victim = g
			break
		}
	}
	victimID := victim.cfg.NodeID
	victim.stop()
	waitVoters(t, nodes, 2)
	if slices.Contains(voterIDs(t, leaderOf(t, nodes)), victimID) {
		t.Fatalf("%s still a voter", victimID)
	}
	idx = putIdentity(t, running(nodes)[0], "ci/after-cleanup")
	waitApplied(t, nodes, idx)

	// It comes back: gossip sees it alive and the leader adds it again.
	victim.start(t)
	waitVoters(t, nodes, 3)

	// A follower departs too (no leadership to hand over).
	l := leaderOf(t, nodes)
	var f *gnode
	for _, g := range running(nodes) {
		if g != l {
			f = g
			break
		}
	}
	if _, err := f.n.Depart(context.Background()); err != nil {
		t.Fatalf("depart follower %s: %v", f.cfg.NodeID, err)
	}
	select {
	case <-f.n.Departed():
	case <-time.After(30 * time.Second):
		t.Fatal("departed follower did not stop")
	}
	f.n = nil
	waitVoters(t, nodes, 2)
}

// TestReconcileReplacesAndRefuses: a server rebuilt under a new id at the
// old Raft address (fresh data dir) takes the old entry's place even with
// dead-server cleanup off (two entries must never share an address); a
// server that belongs to another cluster is never added.
func TestReconcileReplacesAndRefuses(t *testing.T) {
	rec := &logRecorder{}
	nodes := bootstrapExpectCluster(t, 3, func(_ int, c *node.Config) {
		c.DeadServerGrace = -1
		c.Logger = slog.New(rec)
	})
	leader := leaderOf(t, nodes)
	var old *gnode
	for _, g := range nodes {
		if g != leader {
			old = g
			break
		}
	}
	old.stop()
	cfg := gossipConfig(t, t.TempDir(), old.cfg.NodeID+"-rebuilt")
	cfg.RaftAddr = old.cfg.RaftAddr
	cfg.AdminToken = ""
	cfg.Join = []string{leader.cfg.GossipAddr}
	rebuilt := &gnode{cfg: cfg}
	rebuilt.start(t)
	nodes = append(nodes, rebuilt)
	nodetest.Eventually(t, 60*time.Second, "the rebuilt server replaces the old entry", func() error {
		got := voterIDs(t, leaderOf(t, nodes))
		if slices.Contains(got, old.cfg.NodeID) || !slices.Contains(got, rebuilt.cfg.NodeID) || len(got) != 3 {
			return fmt.Errorf("voters %v: want %s replaced by %s", got, old.cfg.NodeID, rebuilt.cfg.NodeID)
		}
		return nil
	})
	waitVoters(t, nodes, 3)
	idx := putIdentity(t, rebuilt, "ci/through-rebuilt")
	waitApplied(t, nodes, idx)

	// A one-node cluster of its own gossips its way in: refused.
	cfg = gossipConfig(t, t.TempDir(), "foreign")
	cfg.Bootstrap = true
	foreign := &gnode{cfg: cfg}
	foreign.start(t)
	if err := foreign.n.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := foreign.n.JoinGossip([]string{leaderOf(t, nodes).cfg.GossipAddr}); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 30*time.Second, "the leader refuses the foreign server", func() error {
		if rec.has("belongs to another cluster") {
			return nil
		}
		return fmt.Errorf("no refusal logged yet")
	})
	if got := voterIDs(t, leaderOf(t, nodes)); slices.Contains(got, "foreign") {
		t.Fatalf("voters %v include a server of another cluster", got)
	}
}

// TestDeadServerKeptForQuorum: with --min-quorum 3 (the default with
// bootstrap-expect 3), a dead server past its grace period keeps its seat
// in a 3-voter cluster; the cluster keeps committing with the two others.
func TestDeadServerKeptForQuorum(t *testing.T) {
	rec := &logRecorder{}
	nodes := bootstrapExpectCluster(t, 3, func(_ int, c *node.Config) {
		c.DeadServerGrace = 500 * time.Millisecond
		c.Logger = slog.New(rec)
	})
	leader := leaderOf(t, nodes)
	var victim *gnode
	for _, g := range nodes {
		if g != leader {
			victim = g
			break
		}
	}
	victim.stop()
	nodetest.Eventually(t, 30*time.Second, "the leader keeps the dead server past its grace", func() error {
		if rec.has("dead server past its grace period kept") {
			return nil
		}
		return fmt.Errorf("not yet")
	})
	if got := voterIDs(t, leaderOf(t, nodes)); !slices.Contains(got, victim.cfg.NodeID) {
		t.Fatalf("voters %v: %s removed below min quorum", got, victim.cfg.NodeID)
	}
	idx := putIdentity(t, leaderOf(t, nodes), "ci/two-of-three")
	waitApplied(t, nodes, idx)
}
