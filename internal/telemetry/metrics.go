// Package telemetry holds Writ's Prometheus metrics, the bridge that exposes
// hashicorp/raft's and memberlist's go-metrics on the same registry, and
// OpenTelemetry tracing for the Connect API.
//
// Nothing here is package-level state except where a dependency forces it:
// raft and memberlist emit to go-metrics' process-wide global sink, so
// BridgeGoMetrics installs one for the process (see its doc).
package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the API and node metrics. Create them once per node with
// NewMetrics; every method is safe for concurrent use.
type Metrics struct {
	// DecisionSeconds: latency of each decision, by RPC method and result
	// (allow, deny, error).
	DecisionSeconds *prometheus.HistogramVec
	// LeasesIssued counts committed issuances by how the lease came to be
	// (login: AuthorizeAndIssue; delegation: LeaseService.Delegate);
	// LeasesRenewed committed renewals.
	LeasesIssued  *prometheus.CounterVec
	LeasesRenewed prometheus.Counter
	// Revocations counts committed revocations by target (lease, subtree,
	// identity, role, owner, credential: the holder's own).
	Revocations *prometheus.CounterVec
	// ShadowEvaluations counts shadow policy set evaluations by active set
	// and result (unchanged, widened, narrowed, reasons).
	ShadowEvaluations *prometheus.CounterVec
	// RevocationPropagationSeconds: from the revocation's commit to every
	// node in contact having applied it (what Revoke waits for).
	RevocationPropagationSeconds prometheus.Histogram
	// RevocationConfirmations counts, per peer of a Revoke, how the peer
	// was confirmed to enforce it: "pushed" (it installed or had applied
	// the pushed revocation), "waited" (it answered a wait for the index),
	// "answered" (it is the leader that applied the write and answered
	// it, so nothing was sent), "stored" (the leader saw it acknowledge
	// the entry's append, which put the announced revocation in force
	// there, so nothing was sent), "unconfirmed" (no answer within max
	// staleness: it fails closed on its own).
	RevocationConfirmations *prometheus.CounterVec
	// LoginFailures by auth method and reason.
	LoginFailures *prometheus.CounterVec
	// RaftCommitSeconds: a write's Propose, from submit to its applied
	// result (group commit, replication, fsync, apply; forwarding included),
	// by the node that proposed it.
	RaftCommitSeconds *prometheus.HistogramVec
	// ApplyLagSeconds: on each node, from the leader appending an entry to
	// this node applying it (clock skew between hosts shifts it).
	ApplyLagSeconds *prometheus.HistogramVec

	decisions sync.Map // decisionLabels → prometheus.Observer
}

type decisionLabels struct{ method, result string }

// Decision is DecisionSeconds' observer for one method and result. The
// observers are kept: WithLabelValues hashes the labels and takes the
// vector's lock on every call, which showed in the Authorize profile, where
// a handful of label pairs are observed on every decision.
func (m *Metrics) Decision(method, result string) prometheus.Observer {
	k := decisionLabels{method, result}
	if o, ok := m.decisions.Load(k); ok {
		return o.(prometheus.Observer)
	}
	o := m.DecisionSeconds.WithLabelValues(method, result)
	m.decisions.Store(k, o)
	return o
}

// decisionBuckets spans the 100 µs decisions of a warm node to the
// seconds of an issuance waiting out an election.
var decisionBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// NewMetrics creates the metrics and registers them on reg (nil: none are
// registered, for tests and benchmarks that do not scrape).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		DecisionSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "writ_decision_duration_seconds", Help: "Decision latency by RPC method and result (allow, deny, error).", Buckets: decisionBuckets,
		}, []string{"method", "result"}),
		LeasesIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_leases_issued_total", Help: "Leases issued (committed) through this node, by how (login, delegation).",
		}, []string{"via"}),
		LeasesRenewed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "writ_leases_renewed_total", Help: "Leases renewed (committed) through this node.",
		}),
		Revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_revocations_total", Help: "Revocations committed through this node, by target.",
		}, []string{"target"}),
		RevocationPropagationSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "writ_revocation_propagation_seconds", Help: "From a revocation's commit until every node in contact with the leader applied it.", Buckets: decisionBuckets,
		}),
		RevocationConfirmations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_revocation_confirmations_total", Help: "Peers confirmed to enforce a revocation this node committed, by how: pushed, waited, answered (the leader that applied the write), stored (acknowledged the entry's append, which enforces it), unconfirmed (no answer within max staleness).",
		}, []string{"how"}),
		ShadowEvaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_policy_shadow_evaluations_total", Help: "Shadow policy set evaluations on this node, by active set and result (unchanged, widened, narrowed, reasons).",
		}, []string{"set", "result"}),
		LoginFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_login_failures_total", Help: "Failed logins by auth method and reason.",
		}, []string{"method", "reason"}),
		RaftCommitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "writ_raft_commit_duration_seconds", Help: "Latency of a replicated write from Propose to its applied result, by proposing node.", Buckets: decisionBuckets,
		}, []string{"node"}),
		ApplyLagSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "writ_raft_apply_lag_seconds", Help: "From the leader appending an entry to this node applying it, by node (entries older than a minute, replayed at start, are not observed).", Buckets: decisionBuckets,
		}, []string{"node"}),
	}
	if reg != nil {
		reg.MustRegister(m.DecisionSeconds, m.LeasesIssued, m.LeasesRenewed, m.Revocations,
			m.RevocationPropagationSeconds, m.RevocationConfirmations, m.LoginFailures, m.RaftCommitSeconds, m.ApplyLagSeconds, m.ShadowEvaluations)
	}
	return m
}
