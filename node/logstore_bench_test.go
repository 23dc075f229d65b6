package node

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// BenchmarkLogStoreAppend measures one fsynced StoreLogs of a small entry on
// a raft.db that has been written and truncated, as a live node's is: the
// cost both the leader and a follower pay in series on every commit. It
// compares bbolt's default (the freelist is written on every commit) with
// the options the node opens its store with (LogStoreOptions). Time per
// append is the disk's and noisy (p50, p99 and max of the appends are
// reported beside the mean); page-bytes/op (pages a commit allocates,
// freelist included) and writes/op do not vary between runs.
func BenchmarkLogStoreAppend(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts *bbolt.Options
	}{
		{"default", nil},
		{"node", LogStoreOptions()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(b.TempDir(), "raft.db"), BoltOptions: tc.opts})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			data := make([]byte, 400)
			// A log that has been compacted: 20,000 entries written in
			// batches, the first 16,000 deleted, as after a snapshot.
			var idx uint64
			for range 200 {
				batch := make([]*raft.Log, 100)
				for i := range batch {
					idx++
					batch[i] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}
				}
				if err := store.StoreLogs(batch); err != nil {
					b.Fatal(err)
				}
			}
			if err := store.DeleteRange(1, 16000); err != nil {
				b.Fatal(err)
			}
			before := store.Stats().TxStats
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				idx++
				t0 := time.Now()
				if err := store.StoreLog(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
			}
			b.StopTimer()
			// The tail, not only the mean: a commit waits for two of these
			// in series (the leader's, then a follower's).
			slices.Sort(took)
			for _, q := range []struct {
				name string
				f    float64
			}{{"p50-µs", 0.50}, {"p99-µs", 0.99}, {"max-µs", 1}} {
				b.ReportMetric(float64(took[min(len(took)-1, int(q.f*float64(len(took))))].Microseconds()), q.name)
			}
			// Deterministic beside the noisy time: what each commit writes.
			after := store.Stats().TxStats
			b.ReportMetric(float64(after.GetPageAlloc()-before.GetPageAlloc())/float64(b.N), "page-bytes/op")
			b.ReportMetric(float64(after.GetWrite()-before.GetWrite())/float64(b.N), "writes/op")
			b.ReportMetric(float64(store.Stats().FreePageN), "free-pages")
		})
	}
}
