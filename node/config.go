package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/writ-dev/writ/audit"
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
	// Join lists API addresses of existing members to join through.
	Join []string
	// AdminToken is required with Bootstrap (it becomes the cluster's admin
	// token) and with Join (it authenticates the join).
	AdminToken string
	// MaxStaleness: a follower out of contact with the leader for longer than
	// this refuses stale reads (fails closed). Default 2s.
	MaxStaleness time.Duration
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
	// DevMode turns off fsync (dev only: an acknowledged write may be lost on power failure).
	DevMode bool
	Raft    RaftTuning

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

// RaftTuning exposes the Raft timing knobs; zero values take the defaults.
type RaftTuning struct {
	HeartbeatTimeout   time.Duration // default 1s
	ElectionTimeout    time.Duration // default 1s
	LeaderLeaseTimeout time.Duration // default 500ms
	CommitTimeout      time.Duration // default 50ms
	SnapshotThreshold  uint64        // default 8192 entries
	SnapshotInterval   time.Duration // default 2m
	TrailingLogs       uint64        // default 10240
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
	if (c.Bootstrap || len(c.Join) > 0) && c.AdminToken == "" {
		errs = append(errs, errors.New("an admin token is required to bootstrap or join"))
	}
	if c.MaxStaleness < 0 || c.HoldTimeout < 0 {
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	r := &c.Raft
	if r.HeartbeatTimeout == 0 {
		r.HeartbeatTimeout = time.Second
	}
	if r.ElectionTimeout == 0 {
		r.ElectionTimeout = time.Second
	}
	if r.LeaderLeaseTimeout == 0 {
		r.LeaderLeaseTimeout = 500 * time.Millisecond
	}
	if r.CommitTimeout == 0 {
		r.CommitTimeout = 50 * time.Millisecond
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
}
