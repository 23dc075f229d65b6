package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/internal/telemetry"
	"github.com/writ-dev/writ/rpc"
)

// observability is the node's audit log, metrics and tracing.
type observability struct {
	reg     *prometheus.Registry
	metrics *telemetry.Metrics
	// commitSeconds is metrics.RaftCommitSeconds for this node, looked up
	// once: Propose observes it on every write.
	commitSeconds prometheus.Observer
	audit         *audit.Log // nil when the node runs unaudited (Config.Audit nil)
	tracing       *telemetry.Tracing
}

// startObservability builds the registry and metrics, opens the audit log
// and starts tracing, as configured. It runs before the API starts.
func (n *Node) startObservability(ctx context.Context) error {
	o := &n.obs
	if n.cfg.BridgeGoMetrics {
		if err := telemetry.BridgeGoMetrics(o.reg); err != nil {
			return err
		}
	}
	if n.cfg.Audit != nil {
		l, err := audit.Open(*n.cfg.Audit, audit.Deps{
			Node:       n.cfg.NodeID,
			Key:        func() []byte { return n.fsm.View().HMACKey() },
			Logger:     n.log,
			Registerer: o.reg,
			Stdout:     n.cfg.AuditStdout,
			OpenSink:   n.cfg.AuditOpenSink,
		})
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		o.audit = l
		n.wg.Add(1)
		go n.checkpointLoop()
	}
	if n.cfg.Tracing.Enabled() {
		tc := n.cfg.Tracing
		tc.Node = n.cfg.NodeID
		t, err := telemetry.NewTracing(ctx, tc)
		if err != nil {
			return err
		}
		o.tracing = t
	}
	return nil
}

// initMetrics builds the registry and the node's metrics (New calls it:
// Raft's FSM adapter observes apply lag from the first entry).
func (n *Node) initMetrics() {
	o := &n.obs
	o.reg = n.cfg.Registry
	if o.reg == nil {
		o.reg = prometheus.NewRegistry()
		o.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	o.metrics = telemetry.NewMetrics(o.reg)
	o.commitSeconds = o.metrics.RaftCommitSeconds.WithLabelValues(n.cfg.NodeID)
	o.reg.MustRegister(&nodeCollector{n: n})
}

// rpcDeps adds the observability parts to the API's dependencies.
func (o *observability) rpcDeps(d rpc.Deps) rpc.Deps {
	d.Metrics = o.metrics
	d.Gatherer = o.reg
	if o.audit != nil {
		d.Audit = o.audit
	}
	if o.tracing != nil {
		d.Interceptors = append(d.Interceptors, o.tracing.Interceptor)
	}
	return d
}

// closeObservability checkpoints the audit chains one last time, closes the
// audit log (draining its spools) and flushes traces. It runs after the API
// stopped and before Raft shuts down.
func (n *Node) closeObservability() error {
	o := &n.obs
	var errs []error
	if o.audit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n.checkpoint(ctx)
		cancel()
		errs = append(errs, o.audit.Close())
	}
	if o.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		errs = append(errs, o.tracing.Shutdown(ctx))
		cancel()
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// Registry is the node's metrics registry (served on /metrics).
func (n *Node) Registry() *prometheus.Registry { return n.obs.reg }

// Audit is the node's audit log (nil when unaudited).
func (n *Node) Audit() *audit.Log { return n.obs.audit }

// checkpointLoop commits the audit chain heads to Raft every
// CheckpointInterval, when they moved, so the cluster vouches for them.
func (n *Node) checkpointLoop() {
	defer n.wg.Done()
	// The first checkpoint comes soon after start (once the node is
	// registered), so even a short-lived node's start is vouched for.
	first := time.NewTimer(min(time.Second, n.obs.audit.Config().CheckpointInterval))
	defer first.Stop()
	t := time.NewTicker(n.obs.audit.Config().CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-first.C:
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		n.checkpoint(ctx)
		cancel()
	}
}

// checkpoint proposes the heads that moved since the last committed
// checkpoint. Failures are logged and retried at the next tick.
func (n *Node) checkpoint(ctx context.Context) {
	if !n.fsm.View().Bootstrapped() {
		return
	}
	committed := map[string]uint64{}
	if self, ok := n.fsm.View().Node(n.cfg.NodeID); ok {
		for _, c := range self.GetAuditCheckpoints() {
			committed[c.GetStream()] = c.GetSeq()
		}
	} else {
		return // not registered yet
	}
	cmd := &fsmpb.CheckpointAudit{NodeId: n.cfg.NodeID}
	for _, h := range n.obs.audit.Heads() {
		if h.Seq > 0 && h.Seq != committed[string(h.Stream)] {
			cmd.Heads = append(cmd.Heads, &fsmpb.AuditCheckpoint{Stream: string(h.Stream), Seq: h.Seq, Hash: h.Hash})
		}
	}
	if len(cmd.Heads) == 0 {
		return
	}
	id, err := randomHex(rand.Reader, 16)
	if err != nil {
		return
	}
	// Ignorable: an older replica that does not know the command skips it
	// (checkpoints are evidence about the audit log, not state decisions
	// depend on).
	results, err := n.Propose(ctx, []*fsmpb.Command{{
		Header:  &fsmpb.Header{RequestId: "audit-" + id, Ignorable: true},
		Payload: &fsmpb.Command_CheckpointAudit{CheckpointAudit: cmd},
	}}, rpc.ProposeOptions{})
	if err == nil && results[0].GetCode() != fsmpb.ResultCode_RESULT_CODE_OK {
		err = fmt.Errorf("%s: %s", results[0].GetCode(), results[0].GetMessage())
	}
	if err != nil && n.ctx.Err() == nil {
		n.log.Warn("audit checkpoint", "err", err)
	}
}

// auditExpired records the expiry of leases the leader just reaped.
func (n *Node) auditExpired(leases []*fsmpb.Lease, index uint64) {
	if n.obs.audit == nil {
		return
	}
	view := n.fsm.View()
	for _, l := range leases {
		a := audit.Actor{ID: l.GetIdentity(), Owner: l.GetOwner(), Role: l.GetRole()}
		if ident, ok := view.Identity(l.GetIdentity()); ok {
			a.Kind = ident.GetKind()
		}
		n.obs.audit.Record(&audit.Event{
			Type: audit.TypeExpire, Method: "ReapExpired", Actor: a, LeaseID: l.GetId(),
			PolicySet: l.GetPolicySet(), PolicyVersion: l.GetPolicyVersion(), AppliedIndex: index,
			Reason: "expired at " + time.Unix(0, l.GetExpiresUnixNano()).UTC().Format(time.RFC3339Nano),
		})
	}
}

var (
	appliedDesc     = prometheus.NewDesc("writ_raft_applied_index", "Raft index this node's FSM has applied.", []string{"node"}, nil)
	commitDesc      = prometheus.NewDesc("writ_raft_commit_index", "Raft commit index as this node knows it.", []string{"node"}, nil)
	applyLagDesc    = prometheus.NewDesc("writ_raft_apply_lag_entries", "Committed entries this node has not applied yet (commit index - applied index).", []string{"node"}, nil)
	lastContactDesc = prometheus.NewDesc("writ_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader).", []string{"node"}, nil)
	leaderDesc      = prometheus.NewDesc("writ_raft_is_leader", "1 while this node leads.", []string{"node"}, nil)
	liveLeasesDesc  = prometheus.NewDesc("writ_live_leases", "Leases in the replicated state not yet expired (revoked ones until reaped).", nil, nil)
	readyDesc       = prometheus.NewDesc("writ_ready", "1 when this node serves decisions (has a leader within max staleness).", []string{"node"}, nil)
)

// nodeCollector reads Raft and state gauges at scrape time.
type nodeCollector struct{ n *Node }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{appliedDesc, commitDesc, applyLagDesc, lastContactDesc, leaderDesc, liveLeasesDesc, readyDesc} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	if n.raft == nil {
		return
	}
	id := n.cfg.NodeID
	applied, commit := n.fsm.AppliedIndex(), n.raft.CommitIndex()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(appliedDesc, float64(applied), id)
	gauge(commitDesc, float64(commit), id)
	gauge(applyLagDesc, float64(commit-min(commit, applied)), id)
	leader := n.raft.State() == raft.Leader
	contact := 0.0
	if lc := n.raft.LastContact(); !leader && !lc.IsZero() {
		contact = time.Since(lc).Seconds()
	}
	gauge(lastContactDesc, contact, id)
	gauge(leaderDesc, b2f(leader), id)
	gauge(readyDesc, b2f(n.Ready() == nil), id)
	gauge(liveLeasesDesc, float64(n.fsm.View().LiveLeases(n.cfg.Clock.Now())))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// auditSystemChange records a change the leader makes on its own (signing
// key rotation and retirement) as an admin record of the system actor. With
// must, the intent is made durable before the change (a rotation issues a
// new key, like an issuance); otherwise the change never waits for the log
// (retiring a key is revocation-like) and one spooled record follows.
func (n *Node) auditSystemChange(ctx context.Context, must bool, method, target, requestID string, change func() error) error {
	l := n.obs.audit
	if l == nil {
		return change()
	}
	ev := &audit.Event{Type: audit.TypeAdmin, Method: method, Actor: audit.Actor{ID: "node:" + n.cfg.NodeID, Kind: "system"},
		Target: target, RequestID: requestID, AuthMethod: "leader"}
	if must {
		intent := *ev
		intent.Phase = audit.PhaseIntent
		if err := l.Durable(ctx, &intent); err != nil {
			return err
		}
		ev.Phase = audit.PhaseResult
	}
	err := change()
	ev.AppliedIndex = n.fsm.AppliedIndex()
	if err != nil {
		ev.Error = &audit.Error{Code: "internal", Reason: err.Error()}
	}
	l.Record(ev)
	return err
}
