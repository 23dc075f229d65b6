package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
)

var gossipKey = []byte("0123456789abcdef0123456789abcdef")

// TestClusterTLS: a cluster whose Raft and node RPC run over mutual TLS
// and whose gossip is encrypted forms, replicates and forwards; a node with
// a certificate from another CA gets into gossip (it holds the key) but is
// never made a voter and never receives the log; a raw dial without the
// right certificate reads nothing; a node with the wrong gossip key cannot
// even join gossip.
func TestClusterTLS(t *testing.T) {
	certs := t.TempDir()
	ca := node.NewTestCA(t, "writ cluster CA")
	rec := &logRecorder{}
	nodes := bootstrapExpectCluster(t, 3, func(i int, c *node.Config) {
		c.Logger = slog.New(rec)
		c.ClusterTLS = ca.Issue(t, filepath.Join(certs, c.NodeID), c.NodeID)
		c.ClusterTLS.ServerName = "server.writ.cluster"
		c.GossipKey = gossipKey
	})
	leader := leaderOf(t, nodes)
	var follower *gnode
	for _, g := range nodes {
		if g != leader {
			follower = g
		}
	}
	idx := putIdentity(t, follower, "ci/over-mtls") // forwarded to the leader over mTLS
	waitApplied(t, nodes, idx)
	st, err := follower.n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.GetClusterTls() || !st.GetGossipEncrypted() {
		t.Fatalf("status: cluster_tls %v gossip_encrypted %v", st.GetClusterTls(), st.GetGossipEncrypted())
	}

	t.Run("wrong CA", func(t *testing.T) {
		rogueCA := node.NewTestCA(t, "rogue CA")
		cfg := gossipConfig(t, t.TempDir(), "rogue")
		cfg.AdminToken = ""
		cfg.ClusterTLS = rogueCA.Issue(t, filepath.Join(certs, "rogue"), "rogue")
		cfg.GossipKey = gossipKey
		cfg.Join = []string{follower.cfg.GossipAddr}
		rogue := &gnode{cfg: cfg}
		rogue.start(t)
		// It is in gossip (it has the key): the leader sees it...
		nodetest.Eventually(t, 30*time.Second, "rogue seen in gossip", func() error {
			st, err := leaderOf(t, nodes).n.Status(context.Background())
			if err != nil {
				return err
			}
			for _, m := range st.GetMembers() {
				if m.GetId() == "rogue" && m.GetGossipState() == "alive" {
					return nil
				}
			}
			return errors.New("not yet")
		})
		// ...but the leader's probe over the cluster port fails the TLS
		// handshake, so it is never added; wait for a refused attempt.
		nodetest.Eventually(t, 30*time.Second, "the leader refuses rogue", func() error {
			if rec.has("add rogue") {
				return nil
			}
			return errors.New("no refused attempt logged yet")
		})
		if slices.Contains(voterIDs(t, leaderOf(t, nodes)), "rogue") {
			t.Fatal("a node with a certificate from another CA was made a voter")
		}
		idx := putIdentity(t, leaderOf(t, nodes), "ci/not-for-rogue")
		waitApplied(t, nodes, idx)
		if rogue.n.FSM().AppliedIndex() != 0 || rogue.n.FSM().View().Bootstrapped() {
			t.Fatal("a node with a certificate from another CA received the log")
		}
		rogue.stop()
	})

	t.Run("raw dial without the right certificate", func(t *testing.T) {
		rogueCA := node.NewTestCA(t, "rogue CA 2")
		files := rogueCA.Issue(t, filepath.Join(certs, "rogue2"), "rogue2")
		cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		addr := leaderOf(t, nodes).n.RaftAddr()
		for name, dial := range map[string]func() (net.Conn, error){
			"tls with a foreign certificate": func() (net.Conn, error) {
				return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
					&tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec // the attacker
			},
			"tls without a certificate": func() (net.Conn, error) {
				return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
					&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec // the attacker
			},
			"plaintext": func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) },
		} {
			t.Run(name, func(t *testing.T) {
				c, err := dial()
				if err != nil {
					return // refused during the handshake: fine
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				// Ask for Raft (first byte 0x01) and send request bytes; the
				// server must close with nothing but (at most) a TLS alert.
				_, _ = c.Write(append([]byte{0x01}, make([]byte, 31)...))
				got, err := io.ReadAll(c)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("cluster port kept the connection open: %v", err)
				}
				if len(got) > 0 && got[0] != 0x15 { // 0x15: a TLS alert record
					t.Fatalf("read %d bytes (%x) from the cluster port without a valid certificate", len(got), got)
				}
			})
		}
	})

	t.Run("wrong gossip key", func(t *testing.T) {
		cfg := gossipConfig(t, t.TempDir(), "badkey")
		cfg.AdminToken = ""
		cfg.ClusterTLS = ca.Issue(t, filepath.Join(certs, "badkey"), "badkey")
		cfg.GossipKey = []byte("fedcba9876543210fedcba9876543210")
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		joinErr := n.JoinGossip([]string{follower.cfg.GossipAddr})
		if joinErr == nil {
			t.Fatal("joined gossip with the wrong key")
		}
		if !errors.Is(joinErr, node.ErrGossip) {
			t.Fatalf("join error %v, want ErrGossip", joinErr)
		}
		st, err := leaderOf(t, nodes).n.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st.GetMembers() {
			if m.GetId() == "badkey" {
				t.Fatalf("the leader lists badkey (%s)", m.GetGossipState())
			}
		}
		if strings.Contains(joinErr.Error(), gossipKeyString()) {
			t.Fatal("error leaks the key")
		}
	})
}

func gossipKeyString() string { return string(gossipKey) }

// logRecorder is a slog handler that remembers every record's text.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) has(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// TestGossipKeyRotation: a server holding the new key as its primary and
// the old one as an extra joins a server still encrypting with the old key
// (that holds the new one as an extra): the middle step of a rotation. A
// server with only an unrelated key cannot join either of them.
func TestGossipKeyRotation(t *testing.T) {
	oldKey, newKey := []byte("old-key-old-key-old-key-old-key!"), []byte("new-key-new-key-new-key-new-key!")
	dir := t.TempDir()
	start := func(id string, primary []byte, extra ...[]byte) *node.Node {
		cfg := gossipConfig(t, dir, id)
		cfg.AdminToken = ""
		cfg.GossipKey, cfg.GossipExtraKeys = primary, extra
		g := &gnode{cfg: cfg}
		g.start(t)
		return g.n
	}
	a := start("a", oldKey, newKey)
	b := start("b", newKey, oldKey)
	if err := b.JoinGossip([]string{a.GossipAddr()}); err != nil {
		t.Fatalf("join with rotated keys: %v", err)
	}
	c := start("c", []byte("unrelated-unrelated-unrelated-!!"))
	for _, target := range []*node.Node{a, b} {
		if err := c.JoinGossip([]string{target.GossipAddr()}); !errors.Is(err, node.ErrGossip) {
			t.Fatalf("join with an unrelated key: %v, want ErrGossip", err)
		}
	}
}

// TestLaggingFollowerSnapshotOverTLS: a follower that was down while the
// leader compacted its log catches up by InstallSnapshot over the mutual
// TLS cluster port (the log it missed no longer exists).
func TestLaggingFollowerSnapshotOverTLS(t *testing.T) {
	certs := t.TempDir()
	ca := node.NewTestCA(t, "writ cluster CA")
	nodes := bootstrapExpectCluster(t, 3, func(_ int, c *node.Config) {
		c.ClusterTLS = ca.Issue(t, filepath.Join(certs, c.NodeID), c.NodeID)
		c.Raft.SnapshotThreshold, c.Raft.TrailingLogs, c.Raft.SnapshotInterval = 16, 4, 50*time.Millisecond
	})
	leader := leaderOf(t, nodes)
	var lagger *gnode
	for _, g := range nodes {
		if g != leader {
			lagger = g
			break
		}
	}
	laggedAt := lagger.n.FSM().AppliedIndex()
	lagger.stop()
	var idx uint64
	for i := range 48 {
		idx = putIdentity(t, leader, fmt.Sprintf("ci/while-down-%d", i))
	}
	nodetest.Eventually(t, 30*time.Second, "the leader compacts its log", func() error {
		// Compacted past where the lagger stopped: it cannot catch up from the log.
		if first, lagged := leader.n.FirstLogIndex(), lagger.cfg.NodeID; first <= laggedAt {
			return fmt.Errorf("first log index %d, %s stopped at %d", first, lagged, laggedAt)
		}
		return nil
	})
	lagger.start(t)
	waitApplied(t, nodes, idx)
	for _, id := range []string{"ci/while-down-0", "ci/while-down-47"} {
		if _, ok := lagger.n.FSM().View().Identity(id); !ok {
			t.Fatalf("the restarted follower lacks %s", id)
		}
	}
}
