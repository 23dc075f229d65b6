package fsm

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// memoryLeases is how many live leases BenchmarkLeaseMemory loads:
// WRIT_LEASE_MEMORY_N, default 100,000 (make bench-leases sets 1,000,000).
func memoryLeases(b *testing.B) int {
	if s := os.Getenv("WRIT_LEASE_MEMORY_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("WRIT_LEASE_MEMORY_N=%q", s)
		}
		return n
	}
	return 100000
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkLeaseMemory loads N live leases the way a busy node holds them
// (rpc-shaped random ids, request ids and decision ids; one resource with
// three stated attributes; 10 identities each with its own role, issued in
// batches of 128) and reports the heap they cost per lease after GC, with
// their dedupe memory (issued within the last 10 minutes, as under churn)
// and after the dedupe window has passed. The timed loop is the read path
// over that state (View + CheckLease).
func BenchmarkLeaseMemory(b *testing.B) {
	n := memoryLeases(b)
	h, leaseIDs, perLease := loadLiveLeases(b, n)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, reason := h.f.View().CheckLease(leaseIDs[i%n], h.now); reason != "" {
			b.Fatal(reason)
		}
		i++
	}
	// After the loop: b.Loop resets what is reported before it.
	b.ReportMetric(perLease[0], "B/lease-in-dedupe-window")
	b.ReportMetric(perLease[1], "B/lease")
	b.ReportMetric(float64(n), "leases")
}

// BenchmarkApplyRevokeIdentity: the state machine's share of revoking an
// identity that holds N live leases (the same fixture; identity ci/id-0
// holds a tenth of them): one RevokeIdentity entry, decoded, applied and
// published. It does not grow with N: the entry moves one epoch.
func BenchmarkApplyRevokeIdentity(b *testing.B) {
	n := memoryLeases(b)
	h, leaseIDs, _ := loadLiveLeases(b, n)
	b.ReportAllocs()
	for b.Loop() {
		h.idx++
		if r := h.f.Apply(h.idx, h.entry(revokeIdentityCmd("ci/id-0")))[0]; r.GetCode() != codeOK {
			b.Fatal(r.GetMessage())
		}
	}
	if r := h.f.View().LeaseValid(leaseIDs[0], h.now); r != ReasonIdentityRevoked {
		b.Fatalf("after revoking: %q", r)
	}
	b.ReportMetric(float64(n), "leases")
}

// loadLiveLeases builds the memory benchmark's state and returns the heap
// per lease inside and past the dedupe window.
func loadLiveLeases(b *testing.B, n int) (*harness, []string, [2]float64) {
	h := base(b)
	const identities = 10
	for i := range identities {
		id := "ci/id-" + strconv.Itoa(i)
		h.ok(identityCmd(id, "prod"))
		h.ok(roleCmd("role-"+strconv.Itoa(i), id, "prod"))
	}
	ids := newRandomIDs(7)
	attrs, err := structpb.NewStruct(map[string]any{"environment": "prod", "owner": "api", "service": "api"})
	if err != nil {
		b.Fatal(err)
	}
	leaseIDs := make([]string, 0, n)
	before := heapInUse()
	for i := 0; i < n; i += 128 {
		h.now = h.now.Add(time.Millisecond)
		batch := make([]*fsmpb.Command, 0, 128)
		for j := i; j < min(i+128, n); j++ {
			k := strconv.Itoa(j % identities)
			c := issueCmd(lease{id: ids.next("l_"), identity: "ci/id-" + k, role: "role-" + k, ttl: time.Hour})
			l := c.GetIssueLease().Lease
			l.DecisionId = ids.next("d_")
			l.Scope.Resources[0].Attributes = attrs
			c.Header.RequestId = ids.next("r_")
			batch = append(batch, c)
			leaseIDs = append(leaseIDs, l.Id)
		}
		for _, r := range h.apply(batch...) {
			if r.GetCode() != codeOK {
				b.Fatal(r.GetMessage())
			}
		}
	}
	withDedupe := heapInUse()
	// Past the dedupe window (well within the leases' hour): rows are pruned
	// a few per entry, so apply enough entries to prune them all.
	h.now = h.now.Add(DedupeWindow + time.Second)
	for range n/128/pruneRowsPerApply + 2 {
		h.apply(noopCmd())
	}
	steady := heapInUse()
	if got := h.f.View().LeaseCount(); got != n {
		b.Fatalf("%d leases stored, want %d", got, n)
	}
	// leaseIDs was allocated before `before`, so it is not counted.
	return h, leaseIDs, [2]float64{float64(withDedupe-before) / float64(n), float64(int64(steady)-int64(before)) / float64(n)}
}
