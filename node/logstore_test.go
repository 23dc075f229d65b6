package node

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// TestLogStoreOptionsUpgrade opens a raft.db written with bbolt's default
// options (every node before LogStoreOptions) with LogStoreOptions, and back,
// and checks every log survives both ways and the store keeps appending: an
// upgrade or a downgrade must not lose the log.
func TestLogStoreOptionsUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	first, next := uint64(1), uint64(1)
	for i, opts := range []*bbolt.Options{nil, LogStoreOptions(), nil, LogStoreOptions()} {
		store, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: opts})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		for idx := first; idx < next; idx++ {
			var l raft.Log
			if err := store.GetLog(idx, &l); err != nil || string(l.Data) != string(rune('a'+idx%26)) {
				t.Fatalf("open %d: log %d: %q, %v", i, idx, l.Data, err)
			}
		}
		batch := make([]*raft.Log, 50)
		for j := range batch {
			batch[j] = &raft.Log{Index: next, Term: 1, Type: raft.LogCommand, Data: []byte(string(rune('a' + next%26)))}
			next++
		}
		if err := store.StoreLogs(batch); err != nil {
			t.Fatalf("open %d: store: %v", i, err)
		}
		// Free pages, so the freelist the next open reads (or rebuilds)
		// is not empty.
		if i == 1 {
			if err := store.DeleteRange(1, 10); err != nil {
				t.Fatal(err)
			}
			first = 11
		}
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
