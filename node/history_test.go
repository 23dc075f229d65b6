package node_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// The history run: clients issue, verify and revoke concurrently through
// every member while a nemesis isolates members, slows links and kills and
// restarts them; every operation is recorded with its call and return time
// and the history is checked against nodetest.LeaseModel with porcupine.
//
// `make test` runs it briefly (WRIT_HISTORY_DURATION, default 5s);
// `make test-chaos` runs it for minutes. On failure the history (JSON and
// porcupine's HTML visualization) and every member's data dir are kept
// under WRIT_HISTORY_DIR (default: the system temp dir) and the path logged.

type poolLease struct {
	id, cred string
	index    uint64
	owner    int
	revoked  bool // a revoke was attempted
}

type leasePool struct {
	mu     sync.Mutex
	leases []*poolLease
}

func (p *leasePool) add(l *poolLease) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leases = append(p.leases, l)
}

func (p *leasePool) pick(r *rand.Rand) *poolLease {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.leases) == 0 {
		return nil
	}
	return p.leases[r.IntN(len(p.leases))]
}

// toRevoke picks one of owner's leases that no revoke was tried on yet.
func (p *leasePool) toRevoke(r *rand.Rand, owner int) *poolLease {
	p.mu.Lock()
	defer p.mu.Unlock()
	var mine []*poolLease
	for _, l := range p.leases {
		if l.owner == owner && !l.revoked {
			mine = append(mine, l)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	l := mine[r.IntN(len(mine))]
	l.revoked = true
	return l
}

func (p *leasePool) all() []*poolLease {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*poolLease(nil), p.leases...)
}

func verifyOutcome(v *writv1.VerifyResponse) string {
	if v.GetActive() {
		return nodetest.OutActive
	}
	return v.GetReason() // revoked, unknown_lease, or anything else the model rejects
}

// recordVerify verifies l on member i (stale read at min_index = its issue
// index) and records the answer; a failed read (fail closed, member down)
// constrains nothing and is not recorded.
func recordVerify(c *nodetest.Cluster, h *nodetest.History, client, i int, l *poolLease) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	call := h.Now()
	resp, err := c.Authz(i, false).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{
		Credential: l.cred, Read: &writv1.ReadOptions{MinIndex: l.index},
	}))
	ret := h.Now()
	if err != nil {
		return
	}
	h.Add(nodetest.Op{
		Client: client, Kind: nodetest.OpVerify, Lease: l.id, Node: c.Members[i].ID,
		Output: verifyOutcome(resp.Msg), Call: call, Return: ret,
		Detail: fmt.Sprintf("applied %d", resp.Msg.GetAppliedIndex()),
	})
}

func historyClient(c *nodetest.Cluster, h *nodetest.History, pool *leasePool, proof *writv1.AppRoleProof, client int, until time.Time, maxOps int) {
	r := rand.New(rand.NewPCG(uint64(client), uint64(time.Now().UnixNano())))
	n := len(c.Members)
	for op := 0; op < maxOps && time.Now().Before(until); op++ {
		i := r.IntN(n)
		switch p := r.IntN(10); {
		case p < 3:
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			call := h.Now()
			resp, err := issueVia(ctx, c, i, proof)
			ret := h.Now()
			cancel()
			if err != nil {
				continue // its lease id is unknown: nothing can refer to it
			}
			l := &poolLease{id: resp.GetLease().GetId(), cred: resp.GetCredential(), index: resp.GetIndex(), owner: client}
			h.Add(nodetest.Op{Client: client, Kind: nodetest.OpIssue, Lease: l.id, Output: nodetest.OutOK, Call: call, Return: ret})
			pool.add(l)
		case p < 8:
			if l := pool.pick(r); l != nil {
				recordVerify(c, h, client, i, l)
			}
		default:
			l := pool.toRevoke(r, client)
			if l == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			call := h.Now()
			_, err := revokeVia(ctx, c, i, l.id)
			ret := h.Now()
			cancel()
			out := nodetest.OutOK
			if err != nil {
				out = nodetest.OutUnknown
			}
			h.Add(nodetest.Op{Client: client, Kind: nodetest.OpRevoke, Lease: l.id, Output: out, Call: call, Return: ret, Detail: errString(err)})
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// nemesis injects one fault at a time until the deadline, recording each.
func nemesis(t *testing.T, c *nodetest.Cluster, h *nodetest.History, until time.Time) {
	r := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	n := len(c.Members)
	for time.Now().Before(until) {
		hold := time.Duration(400+r.IntN(800)) * time.Millisecond
		leader := c.Leader()
		victim := (leader + 1 + r.IntN(n-1)) % n
		var what string
		var undo func()
		switch r.IntN(5) {
		case 0:
			what, undo = "isolate follower "+c.Members[victim].ID, c.Heal
			c.Isolate(victim)
		case 1:
			what, undo = "isolate leader "+c.Members[leader].ID, c.Heal
			c.Isolate(leader)
		case 2:
			what, undo = fmt.Sprintf("slow links %s<->%s 30ms", c.Members[leader].ID, c.Members[victim].ID), c.Heal
			c.SetDelay(leader, victim, 30*time.Millisecond)
		case 3:
			what = "kill leader " + c.Members[leader].ID
			c.Kill(leader)
			undo = func() { c.Restart(leader) }
		default:
			what = "kill follower " + c.Members[victim].ID
			c.Kill(victim)
			undo = func() { c.Restart(victim) }
		}
		start := h.Now()
		t.Logf("nemesis: %s for %s", what, hold)
		waitFor(hold)
		undo()
		h.Fault(what, start, h.Now())
		// Let the cluster settle before the next fault.
		c.LeaderAmong(c.Running()...)
		waitFor(time.Duration(200+r.IntN(400)) * time.Millisecond)
	}
}

// waitFor holds a fault for d. It is the fault's duration, not a wait for a
// condition, so a timer is the right tool.
func waitFor(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

func historyDuration(t *testing.T) time.Duration {
	if s := os.Getenv("WRIT_HISTORY_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("WRIT_HISTORY_DURATION: %v", err)
		}
		return d
	}
	return 5 * time.Second
}

// TestHistoryUnderFaults: see the comment at the top of this file.
func TestHistoryUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault history run")
	}
	dur := historyDuration(t)
	c := nodetest.New(t, 3, nodetest.Options{HoldTimeout: 2 * time.Second})
	proof := setup(t, c)
	h := nodetest.NewHistory()
	pool := &leasePool{}
	until := time.Now().Add(dur)
	const clients = 8
	maxOps := max(200, int(dur/time.Second)*100)
	var wg sync.WaitGroup
	for cl := 0; cl < clients; cl++ {
		wg.Add(1)
		go func(cl int) {
			defer wg.Done()
			historyClient(c, h, pool, proof, cl, until, maxOps)
		}(cl)
	}
	nemesis(t, c, h, until)
	wg.Wait()

	// Heal everything; every member must converge on one state, and its
	// final answers about every lease are part of the history.
	c.Heal()
	for i, m := range c.Members {
		if m.Node == nil {
			c.Restart(i)
		}
	}
	for _, m := range c.Members {
		c.WaitReady(m)
	}
	c.WaitConverged()
	for _, l := range pool.all() {
		for i := range c.Members {
			recordVerify(c, h, clients, i, l)
		}
	}

	ops := h.Ops()
	counts := map[nodetest.OpKind]int{}
	for _, op := range ops {
		counts[op.Kind]++
	}
	t.Logf("history: %d operations (%d issue, %d verify, %d revoke) over %s", len(ops), counts[nodetest.OpIssue], counts[nodetest.OpVerify], counts[nodetest.OpRevoke], dur)
	if counts[nodetest.OpIssue] == 0 || counts[nodetest.OpVerify] == 0 {
		t.Fatal("the run recorded no issue or no verify: nothing was checked")
	}
	base := os.Getenv("WRIT_HISTORY_DIR")
	if base == "" {
		base = os.TempDir()
	}
	dir := filepath.Join(base, fmt.Sprintf("writ-history-%d", time.Now().UnixNano()))
	res, err := h.Check(time.Minute, dir)
	if err != nil {
		if kerr := c.KeepDataDirs(filepath.Join(dir, "data")); kerr != nil {
			t.Logf("keeping data dirs: %v", kerr)
		}
		t.Fatalf("history check %s: %v (history, visualization and data dirs kept in %s)", res, err, dir)
	}
}
