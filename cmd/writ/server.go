package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/policies"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// serverFlags are shared by `writ server` and `writ dev`.
type serverFlags struct {
	nodeID, dataDir             string
	apiAddr, raftAddr           string
	advertiseAPI, advertiseRaft string
	bootstrap                   bool
	join                        []string
	adminToken                  string
	maxStaleness                time.Duration
	keyRotation, keyOverlap     time.Duration
	holderWait                  time.Duration
	logLevel, logFormat         string
	schema                      string
	tlsCert, tlsKey, tlsPeerCA  string
	environments                []string
	gcPercent                   int
	cluster                     clusterFlags
	obs                         observabilityFlags
}

func (f *serverFlags) addLogging(cmd *cobra.Command, level string) {
	cmd.Flags().StringVar(&f.logLevel, "log-level", level, "debug, info, warn or error")
	cmd.Flags().StringVar(&f.logFormat, "log-format", "text", "text or json")
}

// logger builds the node's logger; raft's own chatter is kept for debug.
func (f *serverFlags) logger(w io.Writer) (*slog.Logger, slog.Level, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, 0, usagef("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch f.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), lvl, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), lvl, nil
	}
	return nil, 0, usagef("--log-format %q: want text or json", f.logFormat)
}

func (a *app) serverCmd() *cobra.Command {
	var f serverFlags
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "server --data-dir DIR [--bootstrap-expect N | --bootstrap] [--join ADDR ...]",
		Short: "Run a Writ node",
		Long: `Run one Writ node until SIGINT or SIGTERM (or until ` + "`writ leave`" + ` makes it depart).

Recommended: start every server with the same --bootstrap-expect N, the
same admin token and --join pointing at any other server's gossip address;
once N servers see each other they form one cluster (never twice: a
restarted server has state, a newcomer finds a configured peer and is
added by the leader). Alternatively start the first node with --bootstrap
(a one-voter cluster; without an admin token one is generated and printed
once) and the others with --join. --join takes a gossip address (port
7402) or an API address (port 7400, needs the admin token). A restarted
node needs no flag: its data dir remembers the cluster.

The cluster port (--raft-addr) carries Raft and node-to-node RPC; with
--cluster-tls-cert/--cluster-tls-key/--cluster-ca it is mutual TLS only.
--gossip-key encrypts gossip. See docs/operations.md.`,
		Example: `  export WRIT_ADMIN_TOKEN=... WRIT_GOSSIP_KEY=$(writ keygen)   # the same on every server
  writ server --node-id n1 --data-dir /var/lib/writ --api-addr 10.0.0.1:7400 \
      --raft-addr 10.0.0.1:7401 --bootstrap-expect 3 --join 10.0.0.2:7402
  writ server --node-id n2 --data-dir /var/lib/writ --api-addr 10.0.0.2:7400 \
      --raft-addr 10.0.0.2:7401 --bootstrap-expect 3 --join 10.0.0.1:7402`,
		Args: noArgs,
	}
	fl := cmd.Flags()
	fl.StringVar(&f.nodeID, "node-id", host, "stable Raft server id")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for the Raft log, snapshots and state")
	fl.StringVar(&f.apiAddr, "api-addr", "127.0.0.1:7400", "API listen address")
	fl.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7401", "Raft listen address")
	fl.StringVar(&f.advertiseAPI, "advertise-api", "", "API address other nodes and clients dial (default: --api-addr)")
	fl.StringVar(&f.advertiseRaft, "advertise-raft", "", "Raft address other nodes dial (default: --raft-addr)")
	fl.BoolVar(&f.bootstrap, "bootstrap", false, "form a new cluster with this node as its first voter")
	fl.StringSliceVar(&f.join, "join", nil, "gossip or API address of any member to join through (repeatable)")
	fl.StringVar(&f.adminToken, "admin-token", "", "admin token (env "+envAdminToken+"); required to join, generated if missing with --bootstrap")
	fl.DurationVar(&f.maxStaleness, "max-staleness", 0, "refuse stale reads after losing the leader for this long (default: the node's, 2s)")
	fl.StringVar(&f.schema, "schema", "", "Cedar schema policy sets are validated against (default: Writ's embedded one; extend a copy of policies/writ.cedarschema; give every node the same)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) the API serves HTTPS with; re-read when the file changes")
	fl.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringVar(&f.tlsPeerCA, "tls-peer-ca", "", "PEM CA bundle that verifies other nodes' API certificates when joining through an https --join address (default: the system roots; node-to-node RPC uses the cluster port and --cluster-ca)")
	fl.StringSliceVar(&f.environments, "environments", []string{"prod", "staging", "dev"}, "environments identities and roles may live in (comma-separated)")
	fl.DurationVar(&f.keyRotation, "key-rotation-period", 0, "the leader rotates the signing key when it is this old (0: only on writ key rotate)")
	fl.DurationVar(&f.keyOverlap, "key-overlap", 0, "rotated-out keys keep verifying this long before they retire (default 24h; at least the longest credential lifetime)")
	fl.DurationVar(&f.holderWait, "revocation-holder-wait", 0, "how long the leader waits, after a revocation applies, for every server to acknowledge its entry, so Revoke pushes it to none (default 1ms; negative: no wait; docs/consistency.md)")
	fl.IntVar(&f.gcPercent, "gc-percent", defaultGCPercent, "Go GC target (as GOGC, which overrides it when set): the heap may grow to (1 + N/100) × live data; higher spends memory to save CPU")
	f.cluster.add(fl)
	f.addLogging(cmd, "info")
	f.obs.add(cmd)
	_ = cmd.MarkFlagRequired("data-dir")
	cmd.MarkFlagsMutuallyExclusive("bootstrap", "join")
	cmd.MarkFlagsMutuallyExclusive("bootstrap", "bootstrap-expect")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, _, err := f.logger(a.stderr)
		if err != nil {
			return err
		}
		if f.nodeID == "" {
			return usagef("--node-id is required (the host name is unknown)")
		}
		for i, j := range f.join {
			f.join[i] = strings.TrimSpace(j)
			if f.join[i] == "" {
				return usagef("--join: empty address")
			}
		}
		if f.maxStaleness < 0 || f.keyRotation < 0 || f.keyOverlap < 0 {
			return usagef("--max-staleness, --key-rotation-period and --key-overlap must not be negative")
		}
		if f.gcPercent < 1 {
			return usagef("--gc-percent must be at least 1")
		}
		log.Info("garbage collector", "gc_percent", setGCPercent(a.getenv, f.gcPercent))
		schema, err := serverSchema(f.schema)
		if err != nil {
			return err
		}
		token := f.adminToken
		if token == "" {
			token = a.getenv(envAdminToken)
		}
		if token == "" && len(f.join) > 0 && f.cluster.gossipAddr == "off" {
			return usagef("--join without gossip needs the cluster's admin token (--admin-token or %s)", envAdminToken)
		}
		if token == "" && f.cluster.bootstrapExpect > 0 && !hasState(f.dataDir) {
			return usagef("--bootstrap-expect needs the cluster's admin token, the same on every server (--admin-token or %s)", envAdminToken)
		}
		if token == "" && f.bootstrap && hasState(f.dataDir) {
			// The cluster exists already; bootstrapping is a no-op and a
			// fresh token would be useless.
			log.Info("data dir holds state; --bootstrap ignored", "data_dir", f.dataDir)
			f.bootstrap = false
		}
		if token == "" && f.bootstrap {
			if token, err = newAdminToken(nil); err != nil {
				return markRun(err)
			}
			fmt.Fprintf(a.stderr, "Generated admin token (shown once; keep it secret):\n\n    %s\n\n", token)
		}
		tlsCfg, err := serverTLS(f.tlsCert, f.tlsKey, a.now)
		if err != nil {
			return err
		}
		peer, err := peerTLS(f.tlsPeerCA)
		if err != nil {
			return err
		}
		envs, err := parseEnvironments(f.environments)
		if err != nil {
			return flagErr("environments", err)
		}
		auditCfg, err := f.obs.audit(f.dataDir)
		if err != nil {
			return err
		}
		tracing, err := f.obs.tracing()
		if err != nil {
			return err
		}
		printAuditConfig(a.stderr, log, f.logFormat, auditCfg)
		cfg := node.Config{
			Schema: schema,
			NodeID: f.nodeID, DataDir: f.dataDir,
			APIAddr: f.apiAddr, RaftAddr: f.raftAddr,
			AdvertiseAPI: f.advertiseAPI, AdvertiseRaft: f.advertiseRaft,
			Bootstrap: f.bootstrap, Join: f.join, AdminToken: token,
			MaxStaleness: f.maxStaleness, Logger: log,
			TLS: tlsCfg, PeerTLS: peer, Environments: envs,
			KeyRotationPeriod: f.keyRotation, KeyOverlap: f.keyOverlap,
			Audit: auditCfg, AuditStdout: a.stdout, BridgeGoMetrics: true, Tracing: tracing,
			Raft: node.RaftTuning{HolderWait: f.holderWait},
		}
		if err := f.cluster.apply(&cfg, a.getenv); err != nil {
			return err
		}
		return markRun(a.runNode(cmd.Context(), cfg, log, nil))
	}
	return cmd
}

func (a *app) devCmd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a throwaway single-node Writ with example data",
		Long: `Start one node with a temporary data dir (deleted on exit) and no fsync,
load the example policies, identities and roles through its own admin API,
create a secret id, and print a walkthrough to paste into another shell.`,
		Args: noArgs,
	}
	fl := cmd.Flags()
	fl.StringVar(&f.apiAddr, "api-addr", "127.0.0.1:7400", "API listen address (Raft takes the next port)")
	fl.StringVar(&f.raftAddr, "raft-addr", "", "Raft listen address (default: the API port + 1)")
	fl.StringVar(&f.adminToken, "admin-token", "", "admin token (env "+envAdminToken+"; default: generated)")
	f.addLogging(cmd, "warn")
	f.obs.add(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, _, err := f.logger(a.stderr)
		if err != nil {
			return err
		}
		raftAddr := f.raftAddr
		if raftAddr == "" {
			if raftAddr, err = nextPort(f.apiAddr); err != nil {
				return flagErr("api-addr", err)
			}
		}
		token := f.adminToken
		if token == "" {
			token = a.getenv(envAdminToken)
		}
		if token == "" {
			if token, err = newAdminToken(nil); err != nil {
				return markRun(err)
			}
		}
		data, err := loadDevData()
		if err != nil {
			return markRun(err)
		}
		dir, err := os.MkdirTemp("", "writ-dev-")
		if err != nil {
			return markRun(err)
		}
		defer os.RemoveAll(dir)
		// dev audits like a server, into its temporary dir unless told
		// otherwise, and says where in the banner.
		auditCfg, err := f.obs.audit(dir)
		if err != nil {
			return err
		}
		tracing, err := f.obs.tracing()
		if err != nil {
			return err
		}
		cfg := node.Config{
			NodeID: "dev", DataDir: dir, APIAddr: f.apiAddr, RaftAddr: raftAddr,
			Bootstrap: true, AdminToken: token, Logger: log, DevMode: true,
			Audit: auditCfg, AuditStdout: a.stdout, BridgeGoMetrics: true, Tracing: tracing,
		}
		ready := func(ctx context.Context, n *node.Node) error {
			base := "http://" + n.APIAddr()
			c := newClients(clientConfig{BaseURL: base, Token: token, Protocol: protoConnect})
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			seed, err := seedDev(sctx, c, data)
			if err != nil {
				return fmt.Errorf("load example data: %w", err)
			}
			fmt.Fprint(a.stdout, renderBanner(bannerData{APIURL: base, AdminToken: token, Seed: seed, Example: devExample}))
			fmt.Fprint(a.stdout, auditBanner(auditCfg))
			return nil
		}
		return markRun(a.runNode(cmd.Context(), cfg, log, ready))
	}
	return cmd
}

// runNode starts a node, waits until it is ready, calls ready (if any), and
// serves until ctx ends (SIGINT/SIGTERM), then closes the node. A second
// signal while closing exits at once.
func (a *app) runNode(ctx context.Context, cfg node.Config, log *slog.Logger, ready func(context.Context, *node.Node) error) error {
	n, err := node.New(cfg)
	if err != nil {
		return &usageError{err: err}
	}
	if err := n.Start(ctx); err != nil {
		_ = n.Close()
		return fmt.Errorf("start node: %w", err)
	}
	closeNode := func() error {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		done := make(chan error, 1)
		go func() { done <- n.Close() }()
		select {
		case err := <-done:
			return err
		case <-sig:
			return errors.New("interrupted while shutting down")
		}
	}
	log.Info("node started", "node_id", cfg.NodeID, "api", n.APIAddr(), "data_dir", cfg.DataDir)
	if err := n.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			return closeNode()
		}
		_ = closeNode()
		return err
	}
	log.Info("node ready", "node_id", cfg.NodeID)
	if ready != nil {
		if err := ready(ctx, n); err != nil {
			_ = closeNode()
			return err
		}
	}
	select {
	case <-ctx.Done():
	case <-n.Departed():
		log.Info("left the cluster", "node_id", cfg.NodeID)
		return closeNode()
	}
	log.Info("shutting down", "node_id", cfg.NodeID)
	return closeNode()
}

// loadDevData converts the example library in package policies to API form.
func loadDevData() (devData, error) {
	sets, err := policies.Sets()
	if err != nil {
		return devData{}, fmt.Errorf("example policies: %w", err)
	}
	fx, err := policies.DevFixtures()
	if err != nil {
		return devData{}, fmt.Errorf("example fixtures: %w", err)
	}
	var d devData
	for _, s := range sets {
		d.PolicySets = append(d.PolicySets, &writv1.PolicySet{Name: s.Name, Cedar: string(s.Cedar), Description: "example policies (writ dev)"})
	}
	for _, i := range fx.Identities {
		d.Identities = append(d.Identities, &writv1.Identity{
			Id: i.ID, Kind: i.Kind, Owner: i.Owner, Environment: i.Environment,
			Attributes: i.Attributes, Description: i.Description, Status: "active",
		})
	}
	for _, r := range fx.Roles {
		d.Roles = append(d.Roles, &writv1.Role{
			Name: r.Name, Environment: r.Environment, Identity: r.Identity, AuthMethods: r.AuthMethods,
			DefaultTtlSeconds: int64(r.DefaultTTL / time.Second), MaxTtlSeconds: int64(r.MaxTTL / time.Second),
			MaxRenewals: r.MaxRenewals, MaxLiveLeases: r.MaxLiveLeases, MaxDelegationDepth: r.MaxDelegationDepth,
		})
	}
	return d, nil
}

// hasState reports whether dir holds a node's Raft state.
func hasState(dir string) bool {
	// The node keeps its Raft state under raft/; other files an operator
	// (or a test) put in the data dir are not a cluster.
	entries, err := os.ReadDir(filepath.Join(dir, "raft"))
	return err == nil && len(entries) > 0
}
