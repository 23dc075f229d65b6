package node_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// BenchmarkRevokePropagation: an idle 3-node in-process cluster on loopback
// with fsync. Each op revokes one lease through a follower and then checks
// that every node rejects it with no min_index. Revoke returns only once
// every voter confirmed the entry, so the op time is the propagation time
// (call → every node rejects). Reports p50 and p99.
func BenchmarkRevokePropagation(b *testing.B) {
	c := nodetest.New(b, 3, nodetest.Options{})
	proof := setup(b, c)
	ctx := context.Background()
	leader := c.Leader()
	via := (leader + 1) % 3
	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		issued, err := c.Authz(via, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
		if err != nil {
			b.Fatal(err)
		}
		cred := issued.Msg.GetCredential()
		b.StartTimer()
		start := time.Now()
		if _, err := c.Authz(via, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
			Target: &writv1.RevokeRequest_LeaseId{LeaseId: issued.Msg.GetLease().GetId()},
		})); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		for i := range c.Members {
			v, err := c.Authz(i, false).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: cred}))
			if err != nil || v.Msg.GetActive() {
				b.Fatalf("%s accepts a revoked credential after Revoke returned: %v %v", c.Members[i].ID, err, v)
			}
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
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
