package node_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// BenchmarkRevokeIdentityManyLeases: a 3-node in-process cluster (loopback,
// fsync) where one identity holds N live leases (WRIT_BENCH_LEASES, default
// 10,000; make bench-revoke sets 1,000,000). Each op revokes the identity
// through a follower: one RevokeIdentity entry, whatever N. It reports the
// time from the call until the entry is committed and applied on the leader
// (commit-ms, read from the leader's revocation history) and until Revoke
// returns, i.e. it is in force on every node, applied or pushed into the
// node's overlay (return-ms); then checks, untimed,
// that every node rejects a sample of the leases.
func BenchmarkRevokeIdentityManyLeases(b *testing.B) {
	n := 10000
	if s := os.Getenv("WRIT_BENCH_LEASES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("WRIT_BENCH_LEASES=%q", s)
		}
	}
	c := nodetest.New(b, 3, nodetest.Options{})
	setup(b, c)
	ctx := context.Background()
	leader := c.Leader()
	via := (leader + 1) % 3
	var commit, ret []time.Duration
	for b.Loop() {
		b.StopTimer()
		// Fresh leases under the identity's current epoch.
		ids := bulkLeasesPrefix(b, c, n, time.Hour, strconv.Itoa(len(ret)))
		c.WaitConverged()
		before := c.Members[leader].Node.FSM().AppliedIndex()
		b.StartTimer()
		start := time.Now()
		watch := make(chan time.Duration, 1)
		go func() {
			f := c.Members[leader].Node.FSM()
			for {
				bt := f.Revocations(before, 0)
				if len(bt.Events) > 0 {
					watch <- time.Since(start)
					return
				}
				<-bt.Next
			}
		}()
		if _, err := c.Authz(via, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
			Target: &writv1.RevokeRequest_Identity{Identity: "ci/deploy-api"},
		})); err != nil {
			b.Fatal(err)
		}
		ret = append(ret, time.Since(start))
		commit = append(commit, <-watch)
		b.StopTimer()
		now := time.Now()
		for _, m := range c.Members {
			for _, id := range []string{ids[0], ids[n/2], ids[n-1]} {
				if r := m.Node.LocalView().LeaseValid(id, now); r != fsm.ReasonIdentityRevoked {
					b.Fatalf("%s: %s is %q after Revoke returned", m.ID, id, r)
				}
			}
		}
		b.StartTimer()
	}
	slices.Sort(commit)
	slices.Sort(ret)
	b.ReportMetric(float64(n), "leases")
	b.ReportMetric(float64(commit[len(commit)/2].Microseconds())/1000, "commit-ms")
	b.ReportMetric(float64(ret[len(ret)/2].Microseconds())/1000, "return-ms")
}
