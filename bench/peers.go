package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Peers are the ceilings and peers measured in the same run, with the same
// load, so Writ's figures can be read as ratios on a noisy machine.
type Peers struct {
	// PingURL is a running ping server (ServePing); "" skips the ping with
	// PingSkip as the reason.
	PingURL, PingSkip string
	// PingPID, when set, is the ping server's process: its CPU per call is
	// sampled as a Writ server's is.
	PingPID int
	// Raft measures raw hashicorp/raft applies in this process.
	Raft bool
	// EtcdBinary is the etcd executable ("" skips etcd).
	EtcdBinary string
	// Dir is scratch space for the raft and etcd data dirs.
	Dir string
}

// Peer result names.
const (
	peerPrefix          = "peer:"
	PeerPing            = peerPrefix + "ping"
	PeerRaft            = peerPrefix + "raft"
	PeerEtcdGrant       = peerPrefix + "etcd-lease-grant"
	PeerEtcdPropagation = peerPrefix + "etcd-revoke-propagation"
)

func skipped(name, why string) *Result { return &Result{Scenario: name, Skipped: why} }

// measure runs every configured peer; a peer that cannot run is a Result
// with Skipped set, never an error that stops the benchmark.
func (p *Peers) measure(ctx context.Context, r *runner) []*Result {
	var out []*Result
	l := r.cfg.Load
	l.CPU = nil // it samples Writ's processes, not the peers' (the ping's is set below)
	if p.PingURL != "" {
		pl := l
		if p.PingPID > 0 {
			pl.CPU = ProcessCPU([]int{p.PingPID})
		}
		res, err := r.repeat(ctx, PeerPing, "calls", pl, pingOp(p.PingURL, r.cfg.Target.Protocol, l.Concurrency))
		if err != nil {
			res = skipped(PeerPing, err.Error())
		}
		res.Protocol = string(r.cfg.Target.Protocol)
		res.Note = "bare Connect unary call, AuthorizeRequest in, fixed AuthorizeResponse out, separate process, same http.Server settings"
		out = append(out, res)
	} else if p.PingSkip != "" {
		out = append(out, skipped(PeerPing, p.PingSkip))
	}
	if p.Raft {
		out = append(out, p.raft(ctx, r, l))
	}
	if p.EtcdBinary != "" {
		out = append(out, p.etcd(ctx, r, l)...)
	}
	for _, res := range out {
		if res.Skipped != "" {
			r.log.Warn("peer skipped", "peer", res.Scenario, "why", res.Skipped)
		}
	}
	return out
}

func (p *Peers) scratch(name string) (string, func(), error) {
	d, err := os.MkdirTemp(p.Dir, name)
	if err != nil {
		return "", nil, err
	}
	return d, func() { _ = os.RemoveAll(d) }, nil
}

func (p *Peers) raft(ctx context.Context, r *runner, l Load) *Result {
	dir, cleanup, err := p.scratch("raft-")
	if err != nil {
		return skipped(PeerRaft, err.Error())
	}
	defer cleanup()
	rr, err := startRawRaft(ctx, dir)
	if err != nil {
		return skipped(PeerRaft, err.Error())
	}
	defer rr.close()
	res, err := r.repeat(ctx, PeerRaft, "applies", l, rr.op())
	if err != nil {
		return skipped(PeerRaft, err.Error())
	}
	res.Nodes = 3
	res.Note = "hashicorp/raft v1.7.3 + raft-boltdb/v2 with fsync, 3 voters in one process on loopback TCP, one 256-byte entry per apply"
	return res
}

func (p *Peers) etcd(ctx context.Context, r *runner, l Load) []*Result {
	dir, cleanup, err := p.scratch("etcd-")
	if err != nil {
		return []*Result{skipped(PeerEtcdGrant, err.Error())}
	}
	defer cleanup()
	e, err := startEtcd(ctx, p.EtcdBinary, dir)
	if err != nil {
		if errors.Is(err, ErrPeerMissing) {
			return []*Result{skipped(PeerEtcdGrant, err.Error()), skipped(PeerEtcdPropagation, err.Error())}
		}
		return []*Result{skipped(PeerEtcdGrant, err.Error())}
	}
	defer e.close()
	grant, err := r.repeat(ctx, PeerEtcdGrant, "leases", l, e.grantOp())
	if err != nil {
		grant = skipped(PeerEtcdGrant, err.Error())
	}
	grant.Nodes = 3
	grant.Note = e.version + ", 3 members on 127.0.0.1, clientv3 Grant spread over the members"
	pl := l
	pl.Concurrency, pl.Rate = 1, 0
	prop := NewHistogram()
	n := 0
	start := time.Now()
	res, err := r.repeat(ctx, PeerEtcdPropagation, "revocations", pl, func(ctx context.Context, _ int) (int, error) {
		n++
		d, err := e.propagation(ctx, n%3, n)
		if err == nil && time.Since(start) >= pl.Warmup {
			prop.Record(d)
		}
		return 1, err
	})
	if err != nil {
		return []*Result{grant, skipped(PeerEtcdPropagation, err.Error())}
	}
	s := prop.Summary()
	res.Propagation, res.PropagationCDF, res.Percentiles = &s, prop.CDF(), prop.Percentiles()
	res.P50Ms, res.P90Ms, res.P99Ms, res.P999Ms, res.MaxMs = s.P50Ms, s.P90Ms, s.P99Ms, s.P999Ms, s.MaxMs
	res.Nodes = 3
	res.Note = "lease with one key revoked through one member; time until every member's serializable read misses the key"
	return []*Result{grant, res}
}

// addRatios relates each Writ figure to its ceiling or peer from the same run.
func addRatios(results []*Result) {
	byName := map[string]*Result{}
	for _, r := range results {
		if r.Skipped == "" {
			byName[r.Scenario] = r
		}
	}
	ratio := func(r *Result, key string, num, den float64) {
		if den <= 0 || num <= 0 {
			return
		}
		if r.Ratios == nil {
			r.Ratios = map[string]float64{}
		}
		r.Ratios[key] = num / den
	}
	for _, r := range results {
		if r.Skipped != "" {
			continue
		}
		ping, raft, grant, eprop := byName[PeerPing], byName[PeerRaft], byName[PeerEtcdGrant], byName[PeerEtcdPropagation]
		switch r.Scenario {
		case "authorize", "verify", "policy-scale", "lease-scale":
			if ping != nil {
				ratio(r, "ping", r.OpsPerS, ping.OpsPerS)
				// Work per call, steadier than the rates: how many
				// times the ping server's CPU a decision costs.
				ratio(r, "server_cpu_vs_ping", r.ServerCPUUsPerOp, ping.ServerCPUUsPerOp)
			}
		case "batch-authorize":
			if ping != nil {
				ratio(r, "ping_calls", float64(r.Calls)/max(r.DurationS, 1e-9), ping.OpsPerS)
			}
		case "issue", "renew":
			if grant != nil {
				ratio(r, "etcd_lease_grant", r.OpsPerS, grant.OpsPerS)
			}
			if raft != nil {
				ratio(r, "raft", r.OpsPerS, raft.OpsPerS)
			}
		case "revoke-propagation", "mixed":
			if eprop != nil && r.Propagation != nil {
				ratio(r, "propagation_p99_vs_etcd", r.Propagation.P99Ms, eprop.P99Ms)
			}
		}
	}
}

// String is a one-line human summary of a result.
func (r *Result) String() string {
	if r.Skipped != "" {
		return fmt.Sprintf("%-28s skipped: %s", r.Scenario, r.Skipped)
	}
	s := fmt.Sprintf("%-28s %10.0f %s/s  p50 %7.2f ms  p99 %7.2f ms  errors %d", r.Scenario, r.OpsPerS, r.Unit, r.P50Ms, r.P99Ms, r.Errors)
	if r.Propagation != nil && r.Scenario == "mixed" {
		s += fmt.Sprintf("  propagation p99 %.2f ms", r.Propagation.P99Ms)
	}
	if r.ServerCPUUsPerOp > 0 {
		s += fmt.Sprintf("  cpu %.0f µs/%s (servers %.0f)", r.ServerCPUUsPerOp+r.ClientCPUUsPerOp, strings.TrimSuffix(r.Unit, "s"), r.ServerCPUUsPerOp)
	}
	for _, k := range sortedKeys(r.Ratios) {
		s += fmt.Sprintf("  %s×%.2f", k, r.Ratios[k])
	}
	if r.AuditDropped != nil && *r.AuditDropped > 0 {
		s += fmt.Sprintf("  AUDIT DROPPED %d records", *r.AuditDropped)
	}
	return s
}
