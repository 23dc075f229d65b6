// Package node runs one Writ server: Raft (raft-boltdb/v2 log and stable
// store behind a log cache, file snapshots, TCP transport), the group-commit
// proposer, forwarding of writes to the leader, joins, leader duties and the
// Connect API. It is the only package besides cmd that wires others together.
package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/internal/logging"
	"github.com/writ-dev/writ/rpc"
)

// Node is one running Writ server. Its methods are safe for concurrent use.
type Node struct {
	cfg Config
	log *slog.Logger

	fsm      *fsm.FSM
	engine   *authz.Engine
	verifier *credential.Verifier

	raft      *raft.Raft
	transport *raft.NetworkTransport
	store     *raftboltdb.BoltStore
	logs      *announcingLogs // the log store Raft writes through (announce.go)
	tracker   *appendTracker  // voters' acknowledged appends, this node leading (announce.go)
	proposer  *proposer
	peers     *peerClients
	caught    *freshness
	fwd       *forwarder
	answered  answeredWrites // leaders that applied a forwarded write (await.go)
	mux       *clusterMux    // the cluster port: Raft and node RPC
	nodeSrv   *http.Server   // node RPC on the cluster port
	gossip    *gossip        // nil when gossip is off
	members   *memberTracker
	versions  peerVersions // FSM versions the other servers reported (versions.go)

	// hasState: the data dir held Raft state at start (never bootstrap again).
	hasState bool
	// departed is closed once a graceful Depart has stopped the node.
	departed   chan struct{}
	departOnce sync.Once
	depart     departFlag

	apiLn   net.Listener
	httpSrv *http.Server
	obs     observability

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and prepares a node; Start brings it up.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if cfg.AdvertiseAPI == "" {
		cfg.AdvertiseAPI = cfg.APIAddr
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.NodeID),
		engine:   authz.NewEngine(),
		caught:   newFreshness(),
		verifier: credential.NewVerifier(credential.VerifierConfig{}),
		departed: make(chan struct{}),
	}
	n.members = newMemberTracker()
	n.fsm = fsm.New(fsm.Config{
		Logger:  n.log,
		Version: cfg.FSMVersion,
		OnPolicySetChange: func(ps *fsmpb.PolicySet, deleted bool) {
			if deleted {
				n.engine.Forget(ps.GetName())
				return
			}
			// Compile eagerly so the first decision under a new version does not pay for it.
			if _, err := n.engine.Get(ps); err != nil {
				n.log.Error("compile replicated policy set", "set", ps.GetName(), "version", ps.GetVersion(), "err", err)
			}
		},
	})
	n.initMetrics()
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// Start opens storage, starts Raft and the API listener, then bootstraps or
// joins as configured. It returns once the node is serving; WaitReady waits
// for a leader.
func (n *Node) Start(ctx context.Context) error {
	if err := n.startRaft(); err != nil {
		return err
	}
	n.proposer = newProposer(n.raft, n.cfg.Clock, n.log, n.cfg.Raft.KickDelay, n.ClusterFSMVersion)
	n.proposer.holders = n.revocationHolders
	n.peers = newPeerClients(n.cfg.PeerTLS, func(ctx context.Context, addr string) (net.Conn, error) {
		return n.mux.dial(ctx, addr, muxRPC)
	})
	n.fwd = n.newNodeForwarder()
	if err := n.startObservability(ctx); err != nil {
		_ = n.Close()
		return err
	}
	if err := n.startAPI(); err != nil {
		_ = n.Close()
		return err
	}
	n.startNodeRPC()
	if n.cfg.GossipAddr != "" {
		if err := n.startGossip(); err != nil {
			_ = n.Close()
			return err
		}
	}
	n.wg.Add(3)
	go n.leaderLoop()
	go n.reaperLoop()
	go n.freshnessLoop()
	if n.gossip != nil {
		n.wg.Add(2)
		go n.reconcileLoop()
		go n.rejoinLoop()
		if n.cfg.BootstrapExpect > 0 && !n.hasState {
			n.wg.Add(1)
			go n.bootstrapExpectLoop()
		}
	}
	if len(n.cfg.Join) > 0 {
		n.wg.Add(1)
		go n.joinLoop()
	}
	return nil
}

// startNodeRPC serves NodeService and MemberService on the cluster port.
func (n *Node) startNodeRPC() {
	// Tracing spans forwarded writes too (the receiving node audits them).
	handler := rpc.NewClusterHandler(n.obs.rpcDeps(rpc.Deps{Backend: n, Logger: n.log, Clock: n.cfg.Clock}), n)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	n.nodeSrv = &http.Server{
		Handler:           handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	srv := n.nodeSrv
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := srv.Serve(rpcListener{n.mux}); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Error("node rpc server", "err", err)
		}
	}()
}

func (n *Node) startRaft() error {
	dir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// Raft logs through the node's slog logger (component=raft) unless a
	// separate output was asked for.
	hlog := logging.Hclog(n.log, "raft", hclog.Info)
	if n.cfg.RaftLogOutput != nil {
		hlog = hclog.New(&hclog.LoggerOptions{Name: "raft." + n.cfg.NodeID, Level: hclog.Warn, Output: n.cfg.RaftLogOutput})
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: LogStoreOptions(), NoSync: n.cfg.DevMode})
	if err != nil {
		return fmt.Errorf("open raft store: %w", err)
	}
	n.store = store
	cache, err := raft.NewLogCache(1024, store)
	if err != nil {
		return err
	}
	logs, err := newAnnouncingLogs(cache, n.fsm, n.log)
	if err != nil {
		return fmt.Errorf("open raft store: %w", err)
	}
	n.logs = logs
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	var serverTLS, clientTLS *tls.Config
	if n.cfg.ClusterTLS.enabled() {
		if serverTLS, clientTLS, err = n.cfg.ClusterTLS.configs(n.log); err != nil {
			return err
		}
	}
	mux, err := newClusterMux(n.cfg.RaftAddr, n.cfg.AdvertiseRaft, serverTLS, clientTLS, n.log)
	if err != nil {
		return err
	}
	n.mux = mux
	tconf := &raft.NetworkTransportConfig{
		Stream:  raftLayer{mux},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hlog,
	}
	if n.cfg.PeerAddr != nil {
		tconf.ServerAddressProvider = peerRaftAddrs(n.cfg.PeerAddr)
	}
	trans := raft.NewNetworkTransportWithConfig(tconf)
	n.transport = trans
	n.tracker = &appendTracker{}

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(n.cfg.NodeID)
	conf.Logger = hlog
	conf.HeartbeatTimeout = n.cfg.Raft.HeartbeatTimeout
	conf.ElectionTimeout = n.cfg.Raft.ElectionTimeout
	conf.LeaderLeaseTimeout = n.cfg.Raft.LeaderLeaseTimeout
	conf.CommitTimeout = n.cfg.Raft.CommitTimeout
	conf.SnapshotThreshold = n.cfg.Raft.SnapshotThreshold
	conf.SnapshotInterval = n.cfg.Raft.SnapshotInterval
	conf.TrailingLogs = n.cfg.Raft.TrailingLogs
	conf.MaxAppendEntries = 256
	if err := raft.ValidateConfig(conf); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}

	hasState, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	n.hasState = hasState
	r, err := raft.NewRaft(conf, raftFSM{f: n.fsm, lag: n.obs.metrics.ApplyLagSeconds.WithLabelValues(n.cfg.NodeID)}, logs, store, snaps, &trackingTransport{NetworkTransport: trans, t: n.tracker})
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	if n.cfg.Bootstrap && !hasState {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: conf.LocalID, Address: trans.LocalAddr(),
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	return nil
}

func (n *Node) startAPI() error {
	ln, err := net.Listen("tcp", n.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api listen: %w", err)
	}
	n.apiLn = ln
	if n.cfg.AdvertiseAPI == n.cfg.APIAddr {
		n.cfg.AdvertiseAPI = ln.Addr().String()
	}
	if n.cfg.TLS != nil && !strings.Contains(n.cfg.AdvertiseAPI, "://") {
		// Peers and redirected clients must dial https.
		n.cfg.AdvertiseAPI = "https://" + n.cfg.AdvertiseAPI
	}
	handler := rpc.NewHandler(n.obs.rpcDeps(rpc.Deps{
		Backend:  n,
		Engine:   n.engine,
		Verifier: n.verifier,
		Logger:   n.log,
		Clock:    n.cfg.Clock,
		Schema:   n.cfg.Schema,
		Authn: authn.New(authn.Config{
			Clock: n.cfg.Clock, Logger: n.log,
		}),
		Environments: n.cfg.Environments,

		KeyOverlap: n.cfg.KeyOverlap,
	}))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	if n.cfg.TLS != nil {
		protocols.SetHTTP2(true)
	}
	n.httpSrv = &http.Server{
		Handler:           handler,
		Protocols:         &protocols,
		TLSConfig:         n.cfg.TLS.Clone(), // ServeTLS adds ALPN protocols to it: never share the caller's
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	serve := n.httpSrv.Serve
	if n.cfg.TLS != nil {
		serve = func(ln net.Listener) error { return n.httpSrv.ServeTLS(ln, "", "") }
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api server", "err", err)
		}
	}()
	return nil
}

// APIHandler is the handler the API listener serves (nil before Start):
// benchmarks call it in-process to measure the server's own CPU per call.
func (n *Node) APIHandler() http.Handler {
	if n.httpSrv == nil {
		return nil
	}
	return n.httpSrv.Handler
}

// APIAddr is the API's resolved listen address.
func (n *Node) APIAddr() string {
	if n.apiLn == nil {
		return n.cfg.APIAddr
	}
	return n.apiLn.Addr().String()
}

// RaftAddr is the address other nodes dial for Raft.
func (n *Node) RaftAddr() string { return string(n.transport.LocalAddr()) }

// NodeID is this node's Raft server id.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// FSM exposes the state machine (tests compare state hashes across nodes).
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// WaitReady returns once a leader is known, the cluster is bootstrapped and
// this node is within max staleness.
func (n *Node) WaitReady(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if n.Ready() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not ready: %w (last: %v; last sync round: %v)", n.cfg.NodeID, ctx.Err(), n.Ready(), n.caught.err())
		case <-t.C:
		}
	}
}

// Ready reports nil when the node can serve decisions.
func (n *Node) Ready() error {
	if err := n.fresh(); err != nil {
		return err
	}
	if !n.fsm.View().Bootstrapped() {
		return rpc.ErrNotBootstrapped
	}
	return nil
}

// Close stops the API, the proposer and Raft, and closes storage. A leader
// does not transfer leadership first: use Leave for a graceful departure.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		var errs []error
		if n.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := n.httpSrv.Shutdown(ctx); err != nil {
				_ = n.httpSrv.Close()
			}
			cancel()
		}
		// The audit log's last checkpoint still needs Raft: before it stops.
		errs = append(errs, n.closeObservability())
		if n.gossip != nil {
			n.gossip.shutdown()
		}
		if n.proposer != nil {
			n.proposer.close()
		}
		if n.raft != nil {
			if err := n.raft.Shutdown().Error(); err != nil {
				errs = append(errs, err)
			}
		}
		if n.transport != nil {
			errs = append(errs, n.transport.Close())
		}
		if n.nodeSrv != nil {
			_ = n.nodeSrv.Close()
		}
		if n.mux != nil {
			_ = n.mux.close()
		}
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		if n.peers != nil {
			n.peers.close()
		}
		n.wg.Wait()
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// leaderLoop runs leader duties whenever this node gains leadership:
// finishing bootstrap and keeping its own registration current.
func (n *Node) leaderLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case isLeader := <-n.raft.LeaderCh():
			if !isLeader {
				continue
			}
			if err := n.establishLeadership(); err != nil && n.ctx.Err() == nil {
				n.log.Error("establish leadership", "err", err)
			}
			if n.gossip != nil {
				n.gossip.signal() // reconcile what gossip saw before this term
			}
		}
	}
}

func (n *Node) establishLeadership() error {
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	// Wait for everything committed by earlier terms to be applied.
	if err := n.await(n.raft.Barrier(10 * time.Second)); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	view := n.fsm.View()
	if !view.Bootstrapped() {
		if n.cfg.AdminToken == "" {
			return errors.New("cluster not bootstrapped and this node has no admin token")
		}
		cmd, err := newBootstrapCommand(rand.Reader, n.cfg.AdminToken, n.cfg.Clock.Now())
		if err != nil {
			return err
		}
		if err := n.proposeOne(ctx, cmd); err != nil {
			return fmt.Errorf("bootstrap entry: %w", err)
		}
		n.log.Info("cluster bootstrapped")
	}
	self := &fsmpb.Node{Id: n.cfg.NodeID, RaftAddr: n.RaftAddr(), ApiAddr: n.cfg.AdvertiseAPI, GossipAddr: n.GossipAddr()}
	if old, ok := n.fsm.View().Node(n.cfg.NodeID); !ok || !sameNode(old, self) {
		if err := n.proposeOne(ctx, registerCommand(self)); err != nil {
			return fmt.Errorf("register self: %w", err)
		}
	}
	return nil
}

// proposeOne proposes one command on this node (which must lead) and
// requires an OK result.
func (n *Node) proposeOne(ctx context.Context, cmd *fsmpb.Command) error {
	results, err := n.Propose(ctx, []*fsmpb.Command{cmd}, rpc.ProposeOptions{})
	if err != nil {
		return err
	}
	if c := results[0].GetCode(); c != fsmpb.ResultCode_RESULT_CODE_OK {
		return fmt.Errorf("%s: %s", c, results[0].GetMessage())
	}
	return nil
}

// LogStoreOptions are the bbolt options of the Raft log store. bbolt's default
// writes the whole freelist on every commit; the Raft log is appended and
// truncated from the front, so its freelist is never small, and both the
// leader and a follower pay that write in series on every commit. Without
// it bbolt rebuilds the freelist by scanning the file when it opens, as etcd
// does by default; the map freelist keeps allocation cheap on a fragmented
// file. writ bench's raw-raft peer opens its stores with the same options.
// BenchmarkLogStoreAppend measures the two (node/DESIGN.md).
func LogStoreOptions() *bbolt.Options {
	return &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}
