// Package nodetest runs N Writ nodes in one process on 127.0.0.1 with real
// Raft TCP transports and real Connect listeners, for cluster tests: start,
// kill, restart, wait for a leader, wait for convergence, and compare state
// hashes across replicas.
//
// Faults. Every node-to-node connection goes to the peer's cluster port,
// which carries Raft and node RPC (Forward, WaitApplied, RaftStats) alike,
// through a TCP bridge of its own directed link (see Link): member i reaches
// member j only through Link(i, j). Partition cuts every link between two
// sides, Heal restores them, SetDelay slows a link, Kill and Restart stop
// and start a member on its data dir. Clients of the test (Admin, Authz)
// talk to each member's API directly, never through a bridge, so a test can
// ask a partitioned member what it answers. Harness members run without
// gossip (nothing to partition there); joins go through member 0's API,
// directly, at start only.
//
// Concurrency: a Cluster's fault and wait methods may be called from the
// test goroutine while other goroutines send traffic; Kill and Restart of
// one member must not race each other.
package nodetest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/internal/clock"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// AdminToken is the admin token of every test cluster.
const AdminToken = "writ_admin_test-token"

// Member is one node of a test cluster.
type Member struct {
	ID       string
	DataDir  string
	APIAddr  string // bound address (the node's listeners use port 0 at first start)
	RaftAddr string
	Node     *node.Node // nil while killed
	cfg      node.Config
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	t       testing.TB
	Members []*Member
	http    *http.Client
	// links[from][to]; built before any node starts, never changed.
	links  []map[int]*Link
	index  map[string]int // member id -> index
	mu     sync.Mutex     // guards Member addresses against the bridges
	scheme string
	direct bool // Options.Direct: the router bypasses the links
}

// Options tune a test cluster.
type Options struct {
	// Logger for the nodes; default discards.
	Logger *slog.Logger
	// MaxStaleness for every node; default 2s (the node default: a read lease
	// of 1.5s rides out a busy 2-core machine under -race).
	MaxStaleness time.Duration
	// Clock for every node (the leader stamps it into the log); default real.
	Clock clock.Clock
	// ReapInterval for every node; default 50ms so expiry tests are quick.
	ReapInterval time.Duration
	// CommitTimeout for every node's Raft; default 20ms.
	CommitTimeout time.Duration
	// KickDelay for every node (node.RaftTuning.KickDelay); default
	// node.DefaultKickDelay, negative kicks at once.
	KickDelay time.Duration
	// HoldTimeout for every node (how long a write waits for a leader); default 10s.
	HoldTimeout time.Duration
	// Raft, when set, replaces the harness's Raft timing (500ms heartbeat and
	// election timeouts, 250ms leader lease, CommitTimeout above); zero
	// fields in it take the node defaults.
	Raft *node.RaftTuning
	// TLS makes every node's API serve HTTPS with it (node.Config.TLS);
	// ClientTLS is what the harness's clients and the nodes' peer clients
	// verify it with.
	TLS, ClientTLS *tls.Config
	// Environments identities and roles may live in (node.Config.Environments);
	// default the node's.
	Environments []string
	// ClusterTLS, when set, gives each member (by id) the files of its
	// cluster mutual TLS (node.Config.ClusterTLS): Raft and node RPC then run
	// TLS end to end through the bridges, which only copy bytes.
	ClusterTLS func(memberID string) node.ClusterTLS
	// Configure, when set, adjusts each member's config before it first
	// starts (audit, metrics, tracing).
	Configure func(m *Member, cfg *node.Config)
	// Direct connects members straight to each other's cluster listeners,
	// with no bridge in between, as a deployment is: for latency
	// benchmarks, where each bridge adds a copy and two goroutine wake-ups
	// to every Raft and node RPC message. Link faults (Link, Partition,
	// Isolate) then fail the test; Kill still stops the member.
	Direct bool
}

// New starts an n-node cluster: node 0 bootstraps, the others join through
// it. It returns once every member is ready; Close runs at test cleanup.
func New(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReapInterval == 0 {
		opts.ReapInterval = 50 * time.Millisecond
	}
	if opts.MaxStaleness == 0 {
		opts.MaxStaleness = 2 * time.Second
	}
	if opts.HoldTimeout == 0 {
		opts.HoldTimeout = 10 * time.Second
	}
	if opts.CommitTimeout == 0 {
		opts.CommitTimeout = 20 * time.Millisecond
	}
	c := &Cluster{t: t, http: &http.Client{Timeout: 30 * time.Second}, index: map[string]int{}, scheme: "http://", direct: opts.Direct}
	if opts.TLS != nil {
		c.scheme = "https://"
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = opts.ClientTLS.Clone()
		c.http.Transport = tr
	}
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		// Listeners bind port 0: a port reserved early could be taken by
		// anything else on a shared machine before the node binds it.
		m := &Member{
			ID:       fmt.Sprintf("n%d", i+1),
			DataDir:  filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			APIAddr:  "127.0.0.1:0",
			RaftAddr: "127.0.0.1:0",
		}
		c.Members = append(c.Members, m)
		c.index[m.ID] = i
	}
	t.Cleanup(c.Close)
	c.links = make([]map[int]*Link, n)
	for i := range c.Members {
		c.links[i] = map[int]*Link{}
		for j, to := range c.Members {
			if i == j {
				continue
			}
			l, err := newLink(c.Members[i].ID, to.ID, c.target(j))
			if err != nil {
				t.Fatalf("link %s->%s: %v", c.Members[i].ID, to.ID, err)
			}
			c.links[i][j] = l
		}
	}
	raftLog := io.Discard
	if os.Getenv("WRIT_TEST_RAFT_LOG") != "" {
		raftLog = os.Stderr // hashicorp/raft's warnings, for debugging a failing test
	}
	for i, m := range c.Members {
		m.cfg = node.Config{
			NodeID:        m.ID,
			DataDir:       m.DataDir,
			APIAddr:       m.APIAddr,
			RaftAddr:      m.RaftAddr,
			AdminToken:    AdminToken,
			MaxStaleness:  opts.MaxStaleness,
			HoldTimeout:   opts.HoldTimeout,
			Logger:        opts.Logger.With("member", m.ID),
			RaftLogOutput: raftLog,
			Clock:         opts.Clock,
			ReapInterval:  opts.ReapInterval,
			Environments:  opts.Environments,
			TLS:           opts.TLS,
			PeerTLS:       opts.ClientTLS,
			Raft: node.RaftTuning{
				// Short enough for quick failover tests, long enough that
				// -race on two busy cores does not cause spurious elections.
				HeartbeatTimeout:   500 * time.Millisecond,
				ElectionTimeout:    500 * time.Millisecond,
				LeaderLeaseTimeout: 250 * time.Millisecond,
				CommitTimeout:      opts.CommitTimeout,
				KickDelay:          opts.KickDelay,
			},
			PeerAddr: c.router(i),
		}
		if opts.ClusterTLS != nil {
			m.cfg.ClusterTLS = opts.ClusterTLS(m.ID)
		}
		if opts.Raft != nil {
			m.cfg.Raft = *opts.Raft
		}
		if opts.Configure != nil {
			opts.Configure(m, &m.cfg)
		}
	}
	for i, m := range c.Members {
		if i == 0 {
			m.cfg.Bootstrap = true
		} else {
			m.cfg.Join = []string{c.scheme + c.Members[0].APIAddr}
		}
		c.start(m)
		if i == 0 {
			c.WaitReady(m)
		}
	}
	for _, m := range c.Members {
		c.WaitReady(m)
	}
	c.WaitVoters(n)
	return c
}

// start runs m on its config; the addresses it bound become the member's
// (a restart asks for the same ports again).
func (c *Cluster) start(m *Member) {
	c.t.Helper()
	c.mu.Lock()
	m.cfg.APIAddr, m.cfg.RaftAddr = m.APIAddr, m.RaftAddr
	c.mu.Unlock()
	n, err := c.startNode(m.cfg)
	if err != nil && (m.cfg.APIAddr != "127.0.0.1:0" || m.cfg.RaftAddr != "127.0.0.1:0") {
		// The old port was taken meanwhile: any port will do, since peers
		// reach the member through its links, which follow it.
		m.cfg.APIAddr, m.cfg.RaftAddr = "127.0.0.1:0", "127.0.0.1:0"
		n, err = c.startNode(m.cfg)
	}
	if err != nil {
		c.t.Fatalf("start node %s: %v", m.ID, err)
	}
	c.mu.Lock()
	m.APIAddr, m.RaftAddr = n.APIAddr(), n.RaftAddr()
	c.mu.Unlock()
	m.Node = n
}

func (c *Cluster) startNode(cfg node.Config) (*node.Node, error) {
	n, err := node.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := n.Start(context.Background()); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

// apiAddr is member i's current API address.
func (c *Cluster) apiAddr(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Members[i].APIAddr
}

// target is what a link to member j dials: the cluster address the member
// bound last.
func (c *Cluster) target(j int) func() string {
	return func() string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.Members[j].RaftAddr
	}
}

// Close stops every running member, then the bridges. It is idempotent.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		if m.Node != nil {
			_ = m.Node.Close()
			m.Node = nil
		}
	}
	for _, to := range c.links {
		for _, l := range to {
			l.close()
		}
	}
}

// Kill stops member i abruptly (no leadership transfer, no leave): its
// links are cut first, so its peers lose it at that instant as they would
// to a crash, not when Close has drained its API (which can take seconds
// while a leader still heartbeats). Links cut before the kill stay cut.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	m := c.Members[i]
	if m.Node == nil {
		return
	}
	var cut []*Link
	for j := range c.Members {
		if j == i {
			continue
		}
		c.each(i, j, func(l *Link) {
			if !l.IsCut() {
				l.Cut()
				cut = append(cut, l)
			}
		})
	}
	_ = m.Node.Close()
	m.Node = nil
	for _, l := range cut {
		l.Heal()
	}
}

// Restart starts a killed member again from its data dir (no bootstrap or join:
// its Raft state already names the cluster).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Members[i]
	if m.Node != nil {
		c.t.Fatalf("member %s is running", m.ID)
	}
	m.cfg.Bootstrap = false
	m.cfg.Join = nil
	c.start(m)
}

// RestartWith restarts killed member i with change applied to its
// configuration first, as an operator restarts a server on a new binary or
// with new flags; later restarts keep the change.
func (c *Cluster) RestartWith(i int, change func(*node.Config)) {
	c.t.Helper()
	change(&c.Members[i].cfg)
	c.Restart(i)
}

// Eventually polls cond every 10ms until it returns nil or the deadline passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		case <-tick.C:
		}
	}
}

// WaitReady waits until m has a leader and the cluster is bootstrapped.
func (c *Cluster) WaitReady(m *Member) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Node.WaitReady(ctx); err != nil {
		c.t.Fatal(err)
	}
}

// Leader waits for a running member to lead and returns its index.
func (c *Cluster) Leader() int {
	c.t.Helper()
	return c.LeaderAmong()
}

// LeaderAmong waits until one of the listed running members (every member
// when none is listed) leads, and returns its index. During a partition, ask
// among the majority: a cut-off leader believes it leads until its leader
// lease runs out.
func (c *Cluster) LeaderAmong(members ...int) int {
	c.t.Helper()
	if len(members) == 0 {
		for i := range c.Members {
			members = append(members, i)
		}
	}
	leader := -1
	Eventually(c.t, 20*time.Second, "a leader", func() error {
		for _, i := range members {
			if m := c.Members[i]; m.Node != nil && m.Node.IsLeader() {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("none of members %v leads", members)
	})
	return leader
}

// WaitVoters waits until the leader's configuration has n voters.
func (c *Cluster) WaitVoters(n int) {
	c.t.Helper()
	Eventually(c.t, 20*time.Second, fmt.Sprintf("%d voters", n), func() error {
		l := c.Members[c.Leader()]
		st, err := l.Node.Status(context.Background())
		if err != nil {
			return err
		}
		voters := 0
		for _, m := range st.GetMembers() {
			if m.GetSuffrage() == "voter" && m.GetApiAddr() != "" {
				voters++
			}
		}
		if voters != n {
			return fmt.Errorf("%d registered voters", voters)
		}
		return nil
	})
}

// WaitConverged waits until every running member has applied the same index
// and holds an identical state (equal hashes of their snapshots). Each
// member's index and hash come from one snapshot, so a member applying
// meanwhile cannot make equal states look different.
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	Eventually(c.t, 60*time.Second, "replicas converge", func() error {
		var ref *Member
		var refSnap *fsm.Snapshot
		snaps := map[*Member]*fsm.Snapshot{}
		for _, m := range c.Members {
			if m.Node == nil {
				continue
			}
			s := m.Node.FSM().Snapshot()
			snaps[m] = s
			if ref == nil {
				ref, refSnap = m, s
				continue
			}
			if s.Index() != refSnap.Index() {
				return fmt.Errorf("%s applied %d, %s applied %d", ref.ID, refSnap.Index(), m.ID, s.Index())
			}
		}
		want := snapshotHash(refSnap)
		for m, s := range snaps {
			if m != ref && snapshotHash(s) != want {
				return fmt.Errorf("%s and %s differ at index %d", ref.ID, m.ID, s.Index())
			}
		}
		return nil
	})
}

func snapshotHash(s *fsm.Snapshot) [32]byte {
	h := sha256.New()
	if _, err := s.WriteTo(h); err != nil {
		panic(err) // a hash never fails to write
	}
	return [32]byte(h.Sum(nil))
}

// authed adds the admin token to every call of a client.
func authed(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}))
}

// Admin returns an admin client for member i.
func (c *Cluster) Admin(i int) writv1connect.AdminServiceClient {
	return writv1connect.NewAdminServiceClient(c.http, c.URL(i), authed(AdminToken))
}

// URL is member i's API base URL (https when the cluster serves TLS).
func (c *Cluster) URL(i int) string { return c.scheme + c.apiAddr(i) }

// AuthConfigs returns an admin client of member i's auth config service.
func (c *Cluster) AuthConfigs(i int) writv1connect.AuthConfigServiceClient {
	return writv1connect.NewAuthConfigServiceClient(c.http, c.URL(i), authed(AdminToken))
}

// Authz returns a workload client for member i; with admin it carries the admin token.
func (c *Cluster) Authz(i int, admin bool) writv1connect.AuthzServiceClient {
	var opts []connect.ClientOption
	if admin {
		opts = append(opts, authed(AdminToken))
	}
	return writv1connect.NewAuthzServiceClient(c.http, c.URL(i), opts...)
}

// router is member i's node.Config.PeerAddr: every peer through i's links.
func (c *Cluster) router(i int) func(nodeID, kind string) string {
	return func(nodeID, kind string) string {
		j, ok := c.index[nodeID]
		if !ok || kind != node.PeerCluster {
			return ""
		}
		if j == i || c.direct { // raft dials itself now and then: no bridge for that
			return c.target(j)()
		}
		if l := c.links[i][j]; l != nil {
			return l.Addr()
		}
		return ""
	}
}

// Link returns the bridge member from dials to reach member to's cluster
// port.
func (c *Cluster) Link(from, to int) *Link {
	c.noDirect("Link")
	return c.links[from][to]
}

// noDirect fails the test when a link fault is asked of a Direct cluster,
// whose traffic does not pass the links.
func (c *Cluster) noDirect(what string) {
	if c.direct {
		c.t.Helper()
		c.t.Fatalf("nodetest: %s on a Direct cluster: its traffic bypasses the links", what)
	}
}

// each calls fn on the links between a and b, both directions.
func (c *Cluster) each(a, b int, fn func(*Link)) {
	fn(c.links[a][b])
	fn(c.links[b][a])
}

// Partition cuts every link (the cluster port, so Raft and node RPC, both
// directions) between the members listed in side and all others. Links within either side stay as
// they are. Heal undoes it.
func (c *Cluster) Partition(side ...int) {
	c.noDirect("Partition")
	in := map[int]bool{}
	for _, i := range side {
		in[i] = true
	}
	for a := range c.Members {
		for b := range c.Members {
			if a < b && in[a] != in[b] {
				c.each(a, b, (*Link).Cut)
			}
		}
	}
}

// Isolate cuts member i off from every other member.
func (c *Cluster) Isolate(i int) { c.Partition(i) }

// Heal restores every link and removes every delay.
func (c *Cluster) Heal() {
	for a := range c.Members {
		for b := range c.Members {
			if a < b {
				c.each(a, b, (*Link).Heal)
			}
		}
	}
}

// SetDelay slows traffic between members a and b (both directions, Raft and
// node RPC) by d per chunk; 0 removes it.
func (c *Cluster) SetDelay(a, b int, d time.Duration) {
	c.each(a, b, func(l *Link) { l.SetDelay(d) })
}

// Running lists the indexes of members that are not killed.
func (c *Cluster) Running() []int {
	var out []int
	for i, m := range c.Members {
		if m.Node != nil {
			out = append(out, i)
		}
	}
	return out
}

// KeepDataDirs stops the cluster and copies every member's data dir under
// dst (t.TempDir is deleted when the test ends; a failure report must not
// be). It returns the first copy error.
func (c *Cluster) KeepDataDirs(dst string) error {
	c.Close()
	for _, m := range c.Members {
		if err := os.CopyFS(filepath.Join(dst, m.ID), os.DirFS(m.DataDir)); err != nil {
			return err
		}
	}
	return nil
}
