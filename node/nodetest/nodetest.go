// Package nodetest runs N Writ nodes in one process on 127.0.0.1 with real
// Raft TCP transports and real Connect listeners, for cluster tests: start,
// kill, restart, wait for a leader, wait for convergence, and compare state
// hashes across replicas.
package nodetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

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
	APIAddr  string
	RaftAddr string
	Node     *node.Node // nil while killed
	cfg      node.Config
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	t       testing.TB
	Members []*Member
	http    *http.Client
}

// Options tune a test cluster.
type Options struct {
	// Logger for the nodes; default discards.
	Logger *slog.Logger
	// MaxStaleness for every node; default 1s.
	MaxStaleness time.Duration
	// Clock for every node (the leader stamps it into the log); default real.
	Clock clock.Clock
	// ReapInterval for every node; default 50ms so expiry tests are quick.
	ReapInterval time.Duration
	// Configure, when set, adjusts each member's config before it first
	// starts (audit, metrics, tracing).
	Configure func(m *Member, cfg *node.Config)
}

// freeAddr reserves a loopback port by listening and closing; the port is
// reused on restart so the Raft configuration stays valid.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reserve port: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
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
		opts.MaxStaleness = time.Second
	}
	c := &Cluster{t: t, http: &http.Client{Timeout: 30 * time.Second}}
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		m := &Member{
			ID:       fmt.Sprintf("n%d", i+1),
			DataDir:  filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			APIAddr:  freeAddr(t),
			RaftAddr: freeAddr(t),
		}
		m.cfg = node.Config{
			NodeID:        m.ID,
			DataDir:       m.DataDir,
			APIAddr:       m.APIAddr,
			RaftAddr:      m.RaftAddr,
			AdminToken:    AdminToken,
			MaxStaleness:  opts.MaxStaleness,
			HoldTimeout:   10 * time.Second,
			Logger:        opts.Logger.With("member", m.ID),
			RaftLogOutput: io.Discard,
			Clock:         opts.Clock,
			ReapInterval:  opts.ReapInterval,
			Raft: node.RaftTuning{
				// Short enough for quick failover tests, long enough that
				// -race on two busy cores does not cause spurious elections.
				HeartbeatTimeout:   500 * time.Millisecond,
				ElectionTimeout:    500 * time.Millisecond,
				LeaderLeaseTimeout: 250 * time.Millisecond,
				CommitTimeout:      20 * time.Millisecond,
			},
		}
		if opts.Configure != nil {
			opts.Configure(m, &m.cfg)
		}
		if i == 0 {
			m.cfg.Bootstrap = true
		} else {
			m.cfg.Join = []string{c.Members[0].APIAddr}
		}
		c.Members = append(c.Members, m)
	}
	t.Cleanup(c.Close)
	for i, m := range c.Members {
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

func (c *Cluster) start(m *Member) {
	c.t.Helper()
	n, err := node.New(m.cfg)
	if err != nil {
		c.t.Fatalf("new node %s: %v", m.ID, err)
	}
	if err := n.Start(context.Background()); err != nil {
		c.t.Fatalf("start node %s: %v", m.ID, err)
	}
	m.Node = n
}

// Close stops every running member.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		if m.Node != nil {
			_ = m.Node.Close()
			m.Node = nil
		}
	}
}

// Kill stops member i abruptly (no leadership transfer, no leave).
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	m := c.Members[i]
	if m.Node == nil {
		return
	}
	_ = m.Node.Close()
	m.Node = nil
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
	leader := -1
	Eventually(c.t, 20*time.Second, "a leader", func() error {
		for i, m := range c.Members {
			if m.Node != nil && m.Node.IsLeader() {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("no running member leads")
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
// and holds an identical state (equal state hashes).
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	Eventually(c.t, 20*time.Second, "replicas converge", func() error {
		var ref *Member
		for _, m := range c.Members {
			if m.Node == nil {
				continue
			}
			if ref == nil {
				ref = m
				continue
			}
			a, b := ref.Node.FSM(), m.Node.FSM()
			if a.AppliedIndex() != b.AppliedIndex() {
				return fmt.Errorf("%s applied %d, %s applied %d", ref.ID, a.AppliedIndex(), m.ID, b.AppliedIndex())
			}
			if a.StateHash() != b.StateHash() {
				return fmt.Errorf("%s and %s differ at index %d", ref.ID, m.ID, a.AppliedIndex())
			}
		}
		return nil
	})
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
	return writv1connect.NewAdminServiceClient(c.http, "http://"+c.Members[i].APIAddr, authed(AdminToken))
}

// Authz returns a workload client for member i; with admin it carries the admin token.
func (c *Cluster) Authz(i int, admin bool) writv1connect.AuthzServiceClient {
	var opts []connect.ClientOption
	if admin {
		opts = append(opts, authed(AdminToken))
	}
	return writv1connect.NewAuthzServiceClient(c.http, "http://"+c.Members[i].APIAddr, opts...)
}
