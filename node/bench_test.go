package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// BenchmarkRevokePropagation: a 3-node in-process cluster on loopback with
// fsync. Each op revokes one lease through a follower and then checks that
// every node rejects it with no min_index. Revoke returns only once every
// voter confirmed the entry, so the op time is the propagation time (call →
// every node rejects). Reports p50, p99 and max.
//
// idle: nothing else runs. loaded: 8 background clients issue leases
// through all three nodes for the whole run (issued/s is reported).
// WRIT_BENCH_COMMIT_TIMEOUT overrides the Raft CommitTimeout (default:
// node.DefaultCommitTimeout) and WRIT_BENCH_KICK_DELAY the revocation kick's
// delay (default node.DefaultKickDelay; -1ns kicks at once) to compare
// settings.
// The nodes talk directly (nodetest.Options.Direct), as deployed nodes do,
// and the process collects garbage at node.DefaultGCPercent, as writ server
// does; WRIT_BENCH_BRIDGED=1 routes cluster traffic through the harness's
// fault bridges instead, as measurements before 2026-12-02 16:00 UTC did.
func BenchmarkRevokePropagation(b *testing.B) {
	ct := envDuration(b, "WRIT_BENCH_COMMIT_TIMEOUT", node.DefaultCommitTimeout)
	kick := envDuration(b, "WRIT_BENCH_KICK_DELAY", 0) // 0: node.DefaultKickDelay
	for _, load := range []int{0, 8} {
		name := "idle"
		if load > 0 {
			name = "loaded"
		}
		b.Run(name, func(b *testing.B) { benchRevoke(b, ct, kick, load) })
	}
}

// envDuration reads a duration setting from the environment, def when unset.
func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	return d
}

func benchRevoke(b *testing.B, ct, kick time.Duration, load int) {
	defer debug.SetGCPercent(debug.SetGCPercent(node.DefaultGCPercent))
	c := nodetest.New(b, 3, nodetest.Options{CommitTimeout: ct, KickDelay: kick, Direct: os.Getenv("WRIT_BENCH_BRIDGED") == ""})
	proof := setup(b, c)
	ctx := context.Background()
	leader := c.Leader()
	via := (leader + 1) % 3
	if os.Getenv("WRIT_BENCH_VIA_LEADER") != "" {
		via = leader
	}

	stop := make(chan struct{})
	var issued atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < load; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := c.Authz(w%3, false)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := client.AuthorizeAndIssue(ctx, issueRequest(proof, true)); err == nil {
					issued.Add(1)
				}
			}
		}(w)
	}
	defer func() { close(stop); wg.Wait() }()

	var lat []time.Duration
	closed := 0
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		resp := issueRetrying(b, c, via, proof)
		cred := resp.GetCredential()
		b.StartTimer()
		t0 := time.Now()
		if _, err := c.Authz(via, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
			Target: &writv1.RevokeRequest_LeaseId{LeaseId: resp.GetLease().GetId()},
		})); err != nil {
			b.Fatalf("revoke: %v", err)
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		closed += rejectedEverywhere(b, c, cred)
		b.StartTimer()
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	if load > 0 {
		b.ReportMetric(float64(issued.Load())/elapsed.Seconds(), "issued/s")
	}
	b.ReportMetric(float64(closed), "failed-closed")
}

// issueRetrying issues through member i, retrying while it fails closed
// (a loaded node's read lease can lapse for a moment).
func issueRetrying(b *testing.B, c *nodetest.Cluster, i int, proof *writv1.AppRoleProof) *writv1.AuthorizeAndIssueResponse {
	var err error
	for try := 0; try < 50; try++ {
		var resp *writv1.AuthorizeAndIssueResponse
		if resp, err = issueVia(context.Background(), c, i, proof); err == nil {
			return resp
		}
		if connect.CodeOf(err) != connect.CodeUnavailable {
			break
		}
	}
	b.Fatalf("issue: %v", err)
	return nil
}

// rejectedEverywhere checks that no member accepts cred and returns how
// many refused by failing closed (Unavailable) rather than saying revoked.
func rejectedEverywhere(b *testing.B, c *nodetest.Cluster, cred string) int {
	closed := 0
	for i, m := range c.Members {
		v, err := verifyOn(context.Background(), c, i, cred)
		switch {
		case connect.CodeOf(err) == connect.CodeUnavailable:
			closed++
		case err != nil:
			b.Fatalf("verify on %s: %v", m.ID, err)
		case v.GetActive():
			b.Fatalf("%s accepts a revoked credential after Revoke returned", m.ID)
		}
	}
	return closed
}

// BenchmarkForwardedWrite: one admin write (PutIdentity) through a
// follower of an idle 3-node cluster formed with bootstrap-expect: the
// follower forwards it over the leader's cluster port, the leader
// replicates it over the cluster ports (fsync on). Plaintext against
// mutual TLS with encrypted gossip: what cluster TLS costs per write.
func BenchmarkForwardedWrite(b *testing.B) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plaintext", false}, {"mtls", true}} {
		b.Run(tc.name, func(b *testing.B) {
			certs := b.TempDir()
			ca := node.NewTestCA(b, "bench CA")
			nodes := bootstrapExpectCluster(b, 3, func(_ int, c *node.Config) {
				if tc.tls {
					c.ClusterTLS = ca.Issue(b, filepath.Join(certs, c.NodeID), c.NodeID)
					c.GossipKey = []byte("0123456789abcdef0123456789abcdef")
				}
			})
			leader := leaderOf(b, nodes)
			var via *gnode
			for _, g := range nodes {
				if g != leader {
					via = g
					break
				}
			}
			admin := adminClient(via)
			ctx := context.Background()
			var lat []time.Duration
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				start := time.Now()
				if _, err := admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
					Id: fmt.Sprintf("ci/bench-%d", i), Kind: "ci_job", Owner: "team-platform", Environment: "prod",
				}})); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkNodeRPC: one node RPC round trip between two members of an idle
// 3-node cluster (NodeService.WaitApplied for an index the peer has
// applied, so it answers at once), the way pushes and forwards travel:
// the peer clients over the cluster port. ns/op is the latency of one call
// made alone; cpu-ns/op the process's CPU per call (both nodes' sides).
func BenchmarkNodeRPC(b *testing.B) {
	c := nodetest.New(b, 3, nodetest.Options{Direct: true})
	leader := c.Leader()
	from, to := c.Members[(leader+1)%3].Node, c.Members[(leader+2)%3]
	ctx := context.Background()
	msg := &writv1.WaitAppliedRequest{Index: 1}
	if _, err := from.WaitAppliedOn(ctx, to.RaftAddr, msg, true); err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime(b)
	for b.Loop() {
		if _, err := from.WaitAppliedOn(ctx, to.RaftAddr, msg, true); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
