package node_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

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
