package node_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/node/nodetest"
	"github.com/writ-dev/writ/rpc"
)

// rssKiB reads this process's resident set size from /proc (Linux).
func rssKiB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var kib int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kib)
			return kib
		}
	}
	return -1
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

// TestLeaseChurn is a soak test, skipped unless WRIT_CHURN is a duration
// (make churn runs 10m): one node issues WRIT_CHURN_RATE leases a second
// (default 1,000) with 60 s TTLs, in batches of 100 through the proposer,
// while the leader's reaper (every 5 s) removes expired ones in bulk
// entries. Every 30 s it prints the stored leases, the snapshot size, the
// heap after GC and the process RSS. It fails if, after the first two
// minutes (the live set fills in one TTL), the lease count or the heap grows
// past 1.5 times its level at the two-minute mark.
func TestLeaseChurn(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("WRIT_CHURN"))
	if err != nil {
		t.Skip("set WRIT_CHURN=10m to run the churn soak test (make churn)")
	}
	rate := 1000
	if s := os.Getenv("WRIT_CHURN_RATE"); s != "" {
		fmt.Sscanf(s, "%d", &rate)
	}
	c := nodetest.New(t, 1, nodetest.Options{ReapInterval: 5 * time.Second})
	setup(t, c)
	n := c.Members[0].Node
	view := n.LocalView()
	ident, _ := view.Identity("ci/deploy-api")
	role, _ := view.Role("deploy-api")
	ps, _ := view.PolicySet("prod")
	ctx := context.Background()
	const batch = 100
	tick := time.NewTicker(time.Second * batch / time.Duration(rate))
	defer tick.Stop()
	sample := time.NewTicker(30 * time.Second)
	defer sample.Stop()
	start := time.Now()
	var seq int
	var base struct {
		leases int
		heap   uint64
	}
	t.Logf("%8s %10s %10s %12s %10s %10s", "elapsed", "issued", "stored", "snapshot B", "heap MiB", "RSS MiB")
	for time.Since(start) < d {
		select {
		case <-tick.C:
			cmds := make([]*fsmpb.Command, batch)
			for j := range cmds {
				seq++
				id := fmt.Sprintf("l_churn%09d", seq)
				cmds[j] = &fsmpb.Command{
					Header: &fsmpb.Header{RequestId: "r_" + id},
					Payload: &fsmpb.Command_IssueLease{IssueLease: &fsmpb.IssueLease{Lease: &fsmpb.Lease{
						Id: id, Identity: ident.GetId(), IdentityEpoch: ident.GetEpoch(), Role: role.GetName(), RoleEpoch: role.GetEpoch(),
						Scope:     &fsmpb.Scope{Actions: []string{"deploy"}, Resources: []*fsmpb.Resource{{Type: "Deployment", Id: "api-prod"}}},
						PolicySet: ps.GetName(), PolicyVersion: ps.GetVersion(), DecisionId: "d_" + id, AuthMethod: "approle",
					}, TtlNanos: int64(60 * time.Second)}},
				}
			}
			if _, err := n.Propose(ctx, cmds, rpc.ProposeOptions{}); err != nil {
				t.Fatal(err)
			}
		case <-sample.C:
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			var snap countWriter
			if _, err := n.FSM().Snapshot().WriteTo(&snap); err != nil {
				t.Fatal(err)
			}
			stored := n.LocalView().LeaseCount()
			el := time.Since(start).Round(time.Second)
			t.Logf("%8s %10d %10d %12d %10.1f %10.1f", el, seq, stored, snap.n, float64(ms.HeapAlloc)/(1<<20), float64(rssKiB())/1024)
			switch {
			case el >= 2*time.Minute && base.leases == 0:
				base.leases, base.heap = stored, ms.HeapAlloc
			case base.leases > 0 && (float64(stored) > 1.5*float64(base.leases) || float64(ms.HeapAlloc) > 1.5*float64(base.heap)):
				t.Fatalf("state grows under churn: %d leases, %d heap bytes; at 2m %d and %d", stored, ms.HeapAlloc, base.leases, base.heap)
			}
		}
	}
}
