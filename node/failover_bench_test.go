package node_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	"github.com/writ-dev/writ/rpc"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// BenchmarkFailover: leader failover with many live leases. A 3-node
// in-process cluster (fsync on, the node's default Raft timing unless
// WRIT_FAILOVER_TUNING=test) is loaded with WRIT_FAILOVER_LEASES live leases
// (default 10,000 so `make bench-ci` stays quick; `make bench-failover` uses
// 1,000,000) through Raft in batches of 512 IssueLease commands, every
// replica applying them. Then the leader is killed, and the op time is from
// the kill to the first AuthorizeAndIssue a survivor answers with a lease.
// Nothing is loaded on a leader change: leases live in every replica's
// memdb, and the reaper works from the replicated expiry index.
//
// Before each op after the first, the member killed by the previous op is
// restarted (it replays its own log) and the cluster converges, outside the
// timer. Reports the slowest op's failover-ms (kill to issuance) and
// elected-ms (kill to a survivor leading), and load-s.
func BenchmarkFailover(b *testing.B) {
	leases := 10_000
	if s := os.Getenv("WRIT_FAILOVER_LEASES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("WRIT_FAILOVER_LEASES: %v", err)
		}
		leases = v
	}
	opts := nodetest.Options{Raft: &node.RaftTuning{}} // node defaults
	if os.Getenv("WRIT_FAILOVER_TUNING") == "test" {
		opts.Raft = nil
	}
	c := nodetest.New(b, 3, opts)
	proof := setup(b, c)
	ctx := context.Background()

	t0 := time.Now()
	bulkLoad(b, c, proof, leases)
	load := time.Since(t0)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.Logf("loaded %d leases in %s; heap %d MiB for 3 replicas", leases, load.Round(time.Millisecond), ms.HeapAlloc>>20)

	var worst, worstElected time.Duration
	for b.Loop() {
		b.StopTimer()
		// The member killed by the previous op rejoins first (it replays its
		// own log; that is a restart, not a leader change).
		for i, m := range c.Members {
			if m.Node == nil {
				c.Restart(i)
				c.WaitReady(m)
			}
		}
		c.WaitConverged()
		old := c.Leader()
		applied := c.Members[old].Node.FSM().AppliedIndex()
		var survivors []*node.Node
		for i, m := range c.Members {
			if i != old {
				survivors = append(survivors, m.Node)
			}
		}
		b.StartTimer()
		start := time.Now()
		elected := make(chan time.Duration, 1)
		go func() { elected <- firstLeader(survivors, start) }()
		c.Kill(old)
		took := firstIssue(b, c, proof, old, start)
		b.StopTimer()
		worst = max(worst, took)
		el := <-elected
		worstElected = max(worstElected, el)
		leader := c.Leader()
		st, err := c.Members[leader].Node.Status(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("killed %s at applied index %d; %s leads after %s, serves issuance after %s (term %d)", c.Members[old].ID, applied, c.Members[leader].ID, el.Round(time.Millisecond), took.Round(time.Millisecond), st.GetTerm())
		b.StartTimer()
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "failover-ms")
	b.ReportMetric(float64(worstElected.Microseconds())/1000, "elected-ms")
	b.ReportMetric(load.Seconds(), "load-s")
}

// firstLeader polls the survivors every millisecond and returns how long
// after start one of them led.
func firstLeader(survivors []*node.Node, start time.Time) time.Duration {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		for _, n := range survivors {
			if n.IsLeader() {
				return time.Since(start)
			}
		}
		if time.Since(start) > 30*time.Second {
			return time.Since(start)
		}
	}
	return 0
}

// firstIssue returns how long after start a survivor first answered an issuance.
func firstIssue(b *testing.B, c *nodetest.Cluster, proof *writv1.AppRoleProof, dead int, start time.Time) time.Duration {
	done := make(chan time.Duration, len(c.Members))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range c.Members {
		if i == dead {
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for ctx.Err() == nil {
				if _, err := issueVia(ctx, c, i, proof); err == nil {
					done <- time.Since(start)
					return
				}
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
			}
		}(i)
	}
	select {
	case d := <-done:
		cancel()
		wg.Wait()
		return d
	case <-ctx.Done():
		wg.Wait()
		b.Fatal("no survivor served issuance within 30s")
		return 0
	}
}

// bulkLoad proposes n IssueLease commands on the leader, 512 per call, four
// calls in flight; every one is cloned from a lease the API issued, with a
// fresh id and request id, and a one-hour TTL.
func bulkLoad(b *testing.B, c *nodetest.Cluster, proof *writv1.AppRoleProof, n int) {
	ctx := context.Background()
	resp, err := issueVia(ctx, c, 0, proof)
	if err != nil {
		b.Fatal(err)
	}
	tmpl, ok := c.Members[c.Leader()].Node.FSM().View().Lease(resp.GetLease().GetId())
	if !ok {
		b.Fatal("template lease missing")
	}
	const chunk, inflight = 512, 4
	next := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, inflight)
	for w := 0; w < inflight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for from := range next {
				cmds := make([]*fsmpb.Command, 0, chunk)
				for k := from; k < min(from+chunk, n); k++ {
					l := proto.Clone(tmpl).(*fsmpb.Lease)
					l.Id = fmt.Sprintf("l_bulk%08d", k)
					cmds = append(cmds, &fsmpb.Command{
						Header:  &fsmpb.Header{RequestId: fmt.Sprintf("bulk-%08d", k)},
						Payload: &fsmpb.Command_IssueLease{IssueLease: &fsmpb.IssueLease{Lease: l, TtlNanos: int64(time.Hour)}},
					})
				}
				// Retried on failure (an election under load): request ids make
				// the retry safe, the FSM answers a duplicate with the first result.
				var results []*fsmpb.Result
				var err error
				for try := 0; try < 10; try++ {
					if results, err = c.Members[c.Leader()].Node.Propose(ctx, cmds, rpc.ProposeOptions{}); err == nil {
						break
					}
				}
				if err != nil {
					errs <- err
					return
				}
				for _, r := range results {
					if r.GetCode() != fsmpb.ResultCode_RESULT_CODE_OK {
						errs <- fmt.Errorf("bulk issue: %s %s", r.GetCode(), r.GetMessage())
						return
					}
				}
			}
		}()
	}
	t0 := time.Now()
	for from := 0; from < n; from += chunk {
		if from%(100*chunk) == 0 && from > 0 {
			b.Logf("bulk load: %d leases proposed after %s", from, time.Since(t0).Round(time.Second))
		}
		select {
		case next <- from:
		case err := <-errs:
			b.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	c.WaitConverged()
}
