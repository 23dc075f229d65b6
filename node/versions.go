package node

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/writ-dev/writ/fsm"
)

// peerVersions holds the FSM versions other servers reported with their
// read index requests (every freshness round: max-staleness/8), for the
// leader's version gate (node/DESIGN.md, "FSM versions").
type peerVersions struct {
	mu sync.Mutex
	m  map[string]reportedVersion
	// cached is the last clusterFSMVersion result and when it was computed.
	cached   uint32
	cachedAt time.Time
}

type reportedVersion struct {
	v  uint32
	at time.Time
}

// versionCacheFor is how long the leader reuses its computed cluster
// version: a proposal must not pay for reading the Raft configuration.
const versionCacheFor = 200 * time.Millisecond

// fsmVersion is the FSM version this node applies and reports.
func (n *Node) fsmVersion() uint32 {
	if n.cfg.FSMVersion != 0 {
		return n.cfg.FSMVersion
	}
	return fsm.Version
}

// NotePeerVersion records a server's reported FSM version (rpc.Backend).
func (n *Node) NotePeerVersion(id string, v uint32) {
	n.versions.mu.Lock()
	defer n.versions.mu.Unlock()
	if n.versions.m == nil {
		n.versions.m = map[string]reportedVersion{}
	}
	now := time.Now()
	if len(n.versions.m) >= 64 {
		// Servers removed long ago stop reporting; forget them.
		for k, r := range n.versions.m {
			if now.Sub(r.at) > 10*time.Minute {
				delete(n.versions.m, k)
			}
		}
	}
	prev, known := n.versions.m[id]
	n.versions.m[id] = reportedVersion{v: v, at: now}
	if known && prev.v != v {
		n.versions.cachedAt = time.Time{} // an upgrade or downgrade counts at once
	}
}

// ClusterFSMVersion is the oldest FSM version among the servers of the Raft
// configuration (voters and non-voters: both apply the log), this node's
// own included. A server whose report is missing or older than twice max
// staleness (it stopped sending freshness rounds, or runs a binary that
// does not report) counts as version 1, so a server that comes back with an
// old binary never meets an entry it would halt on. The proposer stamps
// every entry with what its commands require (fsm.Requires) and lowers
// commands to this version (fsm.Lower).
func (n *Node) ClusterFSMVersion() uint32 {
	now := time.Now()
	pv := &n.versions
	pv.mu.Lock()
	if !pv.cachedAt.IsZero() && now.Sub(pv.cachedAt) < versionCacheFor {
		v := pv.cached
		pv.mu.Unlock()
		return v
	}
	pv.mu.Unlock()
	v := n.fsmVersion()
	if n.raft != nil {
		cf := n.raft.GetConfiguration()
		if err := cf.Error(); err != nil {
			return 1
		}
		maxAge := 2 * n.cfg.MaxStaleness
		pv.mu.Lock()
		for _, srv := range cf.Configuration().Servers {
			if srv.ID == raft.ServerID(n.cfg.NodeID) {
				continue
			}
			r, ok := pv.m[string(srv.ID)]
			if !ok || now.Sub(r.at) > maxAge || r.v == 0 {
				v = 1
				continue
			}
			v = min(v, r.v)
		}
		pv.mu.Unlock()
	}
	pv.mu.Lock()
	pv.cached, pv.cachedAt = v, now
	pv.mu.Unlock()
	return v
}
