package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/internal/clock"
	"github.com/writ-dev/writ/internal/telemetry"
)

// Config configures one node. New validates it and fills defaults.
type Config struct {
	// NodeID is the Raft server id; stable across restarts.
	NodeID string
	// DataDir holds the Raft log (bbolt), stable store and snapshots.
	DataDir string
	// APIAddr and RaftAddr are listen addresses (host:port; port 0 picks one).
	APIAddr  string
	RaftAddr string
	// AdvertiseAPI and AdvertiseRaft are what other nodes dial; they default
	// to the listen addresses.
	AdvertiseAPI  string
	AdvertiseRaft string
	// Bootstrap forms a new cluster with this node as its first voter. It is
	// ignored when the data dir already holds Raft state.
	Bootstrap bool
	// Join lists addresses of existing members to join through: gossip
	// addresses (memberlist join; the leader then adds this node as a voter)
	// or API addresses (ClusterService.Join with the admin token). Each is
	// tried as gossip first when gossip is on.
	Join []string
	// AdminToken is required with Bootstrap, and with BootstrapExpect on an
	// empty data dir (it becomes the cluster's admin token), and with Join
	// when gossip is off (it authenticates the API join).
	AdminToken string

	// GossipAddr is the memberlist listen address (TCP and UDP); empty turns
	// gossip off (then only Bootstrap and API joins form clusters).
	GossipAddr string
	// AdvertiseGossip is what other nodes dial for gossip (an IP:port);
	// default the listen address.
	AdvertiseGossip string
	// GossipKey encrypts gossip (AES-GCM, 16, 24 or 32 bytes); every member
	// must hold it. Empty leaves gossip in the clear.
	GossipKey []byte
	// GossipExtraKeys are also accepted when decrypting gossip (never used
	// to encrypt): the rotation path. Roll every server with the new key as
	// an extra key, then with it as GossipKey (old key extra), then drop the
	// old key; gossip never splits.
	GossipExtraKeys [][]byte
	// Gossip tunes failure detection; zero values take memberlist's LAN defaults.
	Gossip GossipTuning
	// BootstrapExpect forms a cluster once this many servers (started with
	// the same value) see each other through gossip, unless one already
	// belongs to a cluster. Ignored when the data dir holds Raft state.
	BootstrapExpect int
	// DeadServerGrace is how long a voter must be dead in gossip before the
	// leader removes it from the Raft configuration (only while quorum stays
	// safe; see MinQuorum). Default 5m; negative disables the cleanup.
	DeadServerGrace time.Duration
	// MinQuorum: dead-server cleanup never shrinks the voters below this
	// many. Default BootstrapExpect (or 1 without it).
	MinQuorum int
	// ReconcileInterval is how often the leader reconciles gossip membership
	// into Raft voters besides reacting to gossip events. Default 10s.
	ReconcileInterval time.Duration
	// ClusterTLS puts Raft and node RPC under mutual TLS; zero value:
	// plaintext. It is independent of TLS, which serves clients on the API.
	ClusterTLS ClusterTLS
	// MaxStaleness: a follower out of contact with the leader for longer than
	// this refuses stale reads (fails closed). Default 2s.
	MaxStaleness time.Duration
	// FSMVersion pins the FSM version this node applies and reports
	// (fsm.Config.Version); 0 means fsm.Version. Tests set it lower to stand
	// in for a server of an older binary during a rolling upgrade.
	FSMVersion uint32
	// HoldTimeout bounds how long a write waits for a leader (through an
	// election) before failing Unavailable. Default 5s.
	HoldTimeout time.Duration
	Logger      *slog.Logger
	// RaftLogOutput, when set, receives hashicorp/raft's own log lines as
	// hclog text at warn and above; by default they go through Logger
	// (component=raft), filtered by its level.
	RaftLogOutput io.Writer
	Clock         clock.Clock
	// ReapInterval is how often the leader removes expired leases. Default 10s.
	ReapInterval time.Duration
	// Schema validates policy sets on write; nil means Writ's embedded
	// schema. Every node of a cluster must be given the same one.
	Schema *authz.Schema
	// KeyRotationPeriod: the leader puts a new signing key when the newest is
	// this old. 0 turns automatic rotation off (`writ key rotate` still works).
	KeyRotationPeriod time.Duration
	// KeyOverlap is how long rotated-out keys keep verifying before the
	// leader retires them; make it at least the longest credential
	// lifetime. Default 24h.
	KeyOverlap time.Duration
	// DevMode turns off fsync (dev only: an acknowledged write may be lost on power failure).
	DevMode bool
	Raft    RaftTuning
	// PeerAddr, when set, names the address this node dials to reach peer
	// nodeID's listener of kind PeerCluster (its cluster port: Raft and node
	// RPC) instead of the address the peer advertised; "" keeps the
	// advertised one. node/nodetest routes every directed link through its
	// own fault-injecting TCP bridge with it (advertised addresses are
	// global, so they cannot tell links apart). Gossip and joins through an
	// API address are not routed. It is called concurrently and must not
	// block.
	PeerAddr func(nodeID, kind string) string

	// TLS, when set, makes the API serve HTTPS (HTTP/1.1 and HTTP/2) with
	// these certificates. Its ClientAuth is normally tls.RequestClientCert:
	// the handshake asks for a client certificate without judging it, and
	// mTLS logins verify it against the role's auth configs.
	TLS *tls.Config
	// PeerTLS verifies other nodes' API certificates when this node calls
	// their public API over https (joins through an https --join address);
	// default: the system roots. Node-to-node RPC (forwarding, read
	// indexes, revocation confirmations) runs on the cluster port under
	// ClusterTLS instead, never on the API.
	PeerTLS *tls.Config
	// Environments identities and roles may live in; default prod,
	// staging, dev.
	Environments []string

	// Audit configures the audit log; nil runs the node unaudited (tests
	// and benchmarks). `writ server` and `writ dev` always set it.
	Audit *audit.Config
	// AuditStdout is the writer of stdout audit sinks; default os.Stdout.
	AuditStdout io.Writer
	// AuditOpenSink overrides how audit sinks open (fault tests).
	AuditOpenSink func(stream audit.Stream, sc *audit.StreamConfig, path string) (audit.Sink, error)
	// Registry receives the node's metrics (served on /metrics); default a
	// new registry with the Go and process collectors.
	Registry *prometheus.Registry
	// BridgeGoMetrics exposes raft's and memberlist's go-metrics on
	// Registry. It sets go-metrics' process-wide sink: one node per process.
	BridgeGoMetrics bool
	// Tracing turns on OpenTelemetry tracing of the API (off by default).
	Tracing telemetry.TracingConfig
}

// DefaultCommitTimeout is how long an idle leader waits before telling
// followers the commit index with an empty append (hashicorp/raft's
// CommitTimeout). Revocations do not wait for it: the proposer follows them
// with an append after DefaultKickDelay. See DESIGN.md ("Revocation in one round trip")
// for the measured CPU cost of lower values.
const DefaultCommitTimeout = 50 * time.Millisecond

// DefaultKickDelay: a pushed revocation's kick waits this long after the
// leader applied it, so that its three log commits (the leader's, then the
// followers', each fsynced) do not compete with the push for the disk and
// two cores (DESIGN.md, "The kick waits for the push").
const DefaultKickDelay = 3 * time.Millisecond

// DefaultHolderWait: how long the leader waits for the voter whose append
// answer did not make a revocation's commit (DESIGN.md, "Announced
// revocations").
const DefaultHolderWait = time.Millisecond

// DefaultGCPercent is the garbage collector target (Go's GOGC) writ server
// runs a node with unless told otherwise (cmd/writ/gc.go says why 200).
// In-process benchmarks set it too, to measure what the server runs.
const DefaultGCPercent = 200

// PeerCluster is the listener kind Config.PeerAddr is asked for: a peer's
// cluster port, which carries Raft and node RPC (NodeService,
// MemberService) alike. There is one kind since the cluster port replaced
// the separate Raft and node-API links; gossip is not routed (see
// DESIGN.md, "Fault injection").
const PeerCluster = "cluster"

// GossipTuning exposes memberlist's failure-detection knobs.
type GossipTuning struct {
	ProbeInterval    time.Duration // default 1s
	ProbeTimeout     time.Duration // default 500ms
	GossipInterval   time.Duration // default 200ms
	SuspicionMult    int           // default 4
	PushPullInterval time.Duration // default 30s
}

// RaftTuning exposes the Raft timing knobs; zero values take the defaults.
type RaftTuning struct {
	HeartbeatTimeout   time.Duration // default 500ms
	ElectionTimeout    time.Duration // default 500ms
	LeaderLeaseTimeout time.Duration // default 250ms
	CommitTimeout      time.Duration // default DefaultCommitTimeout
	SnapshotThreshold  uint64        // default 8192 entries
	SnapshotInterval   time.Duration // default 2m
	TrailingLogs       uint64        // default 10240
	// KickDelay: how long after a pushed revocation applies on the leader
	// the empty append that tells followers its commit waits (default
	// DefaultKickDelay; negative: none, kick at once). See DESIGN.md ("The
	// kick waits for the push").
	KickDelay time.Duration
	// HolderWait: how long the leader waits, after applying a revocation,
	// for every other server to acknowledge the entry's append, so that it
	// can name them all as holders and Revoke pushes to none (default
	// DefaultHolderWait; negative: no wait). See DESIGN.md ("Announced
	// revocations").
	HolderWait time.Duration
}

func (c *Config) validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node id is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if c.APIAddr == "" {
		errs = append(errs, errors.New("api addr is required"))
	}
	if c.RaftAddr == "" {
		errs = append(errs, errors.New("raft addr is required"))
	}
	if c.Bootstrap && len(c.Join) > 0 {
		errs = append(errs, errors.New("bootstrap and join are exclusive"))
	}
	if c.Bootstrap && c.AdminToken == "" {
		errs = append(errs, errors.New("an admin token is required to bootstrap"))
	}
	if len(c.Join) > 0 && c.GossipAddr == "" && c.AdminToken == "" {
		errs = append(errs, errors.New("an admin token is required to join through the API (gossip is off)"))
	}
	if c.Bootstrap && c.BootstrapExpect > 0 {
		errs = append(errs, errors.New("bootstrap and bootstrap-expect are exclusive"))
	}
	if c.BootstrapExpect < 0 || c.MinQuorum < 0 {
		errs = append(errs, errors.New("bootstrap-expect and min-quorum must not be negative"))
	}
	if c.BootstrapExpect > 0 && c.GossipAddr == "" {
		errs = append(errs, errors.New("bootstrap-expect needs gossip (a gossip address)"))
	}
	for i, key := range append([][]byte{c.GossipKey}, c.GossipExtraKeys...) {
		if k := len(key); (k != 0 || i > 0) && k != 16 && k != 24 && k != 32 {
			errs = append(errs, fmt.Errorf("gossip key %d is %d bytes; want 16, 24 or 32", i+1, k))
		}
	}
	if len(c.GossipKey) == 0 && len(c.GossipExtraKeys) > 0 {
		errs = append(errs, errors.New("extra gossip keys need a primary gossip key"))
	}
	if err := c.ClusterTLS.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxStaleness < 0 || c.HoldTimeout < 0 || c.KeyRotationPeriod < 0 || c.KeyOverlap < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node config: %w", err)
	}
	return nil
}

func (c *Config) defaults() {
	if c.MaxStaleness == 0 {
		c.MaxStaleness = 2 * time.Second
	}
	if c.HoldTimeout == 0 {
		c.HoldTimeout = 5 * time.Second
	}
	if c.ReapInterval == 0 {
		c.ReapInterval = 10 * time.Second
	}
	if c.KeyOverlap == 0 {
		c.KeyOverlap = 24 * time.Hour
	}
	if c.DeadServerGrace == 0 {
		c.DeadServerGrace = 5 * time.Minute
	}
	if c.MinQuorum == 0 {
		c.MinQuorum = max(c.BootstrapExpect, 1)
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	r := &c.Raft
	// A follower notices a dead leader after a random 1x-2x HeartbeatTimeout,
	// and both survivors must notice before one can win: 500ms keeps a
	// failover within about a second (hashicorp/raft's 1s default measured
	// 1.4-2.7s to serve issuance again, docs/benchmarks.md).
	if r.HeartbeatTimeout == 0 {
		r.HeartbeatTimeout = 500 * time.Millisecond
	}
	if r.ElectionTimeout == 0 {
		r.ElectionTimeout = 500 * time.Millisecond
	}
	if r.LeaderLeaseTimeout == 0 {
		r.LeaderLeaseTimeout = 250 * time.Millisecond
	}
	if r.CommitTimeout == 0 {
		r.CommitTimeout = DefaultCommitTimeout
	}
	if r.SnapshotThreshold == 0 {
		r.SnapshotThreshold = 8192
	}
	if r.SnapshotInterval == 0 {
		r.SnapshotInterval = 2 * time.Minute
	}
	if r.TrailingLogs == 0 {
		r.TrailingLogs = 10240
	}
	switch {
	case r.KickDelay == 0:
		r.KickDelay = DefaultKickDelay
	case r.KickDelay < 0:
		r.KickDelay = 0
	}
	switch {
	case r.HolderWait == 0:
		r.HolderWait = DefaultHolderWait
	case r.HolderWait < 0:
		r.HolderWait = 0
	}
}
