package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/writ-dev/writ/node"
)

// rawRaft is three hashicorp/raft voters in this process on loopback TCP,
// with the store (node.LogStoreOptions), log cache and fsync a Writ node
// uses, and an FSM that only counts: the storage ceiling for one log entry
// per write.
type rawRaft struct {
	nodes  []*raft.Raft
	stores []*raftboltdb.BoltStore
	trans  []*raft.NetworkTransport
}

type countFSM struct{ n atomic.Uint64 }

func (f *countFSM) Apply(*raft.Log) any                 { f.n.Add(1); return nil }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnap{}, nil }
func (f *countFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type countSnap struct{}

func (countSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (countSnap) Release()                          {}

// startRawRaft starts the three voters under dir and waits for a leader.
func startRawRaft(ctx context.Context, dir string) (*rawRaft, error) {
	rr := &rawRaft{}
	var servers []raft.Server
	confs := make([]*raft.Config, 3)
	hlog := hclog.New(&hclog.LoggerOptions{Name: "bench-raft", Level: hclog.Error, Output: io.Discard})
	type parts struct {
		logs  raft.LogStore
		store *raftboltdb.BoltStore
		snaps raft.SnapshotStore
		trans *raft.NetworkTransport
	}
	ps := make([]parts, 3)
	for i := range 3 {
		d := filepath.Join(dir, fmt.Sprintf("r%d", i+1))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(d, "raft.db"), BoltOptions: node.LogStoreOptions()})
		if err != nil {
			return nil, err
		}
		rr.stores = append(rr.stores, store)
		logs, err := raft.NewLogCache(1024, store)
		if err != nil {
			return nil, err
		}
		trans, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 10*time.Second, hlog)
		if err != nil {
			rr.close()
			return nil, err
		}
		rr.trans = append(rr.trans, trans)
		c := raft.DefaultConfig()
		c.LocalID = raft.ServerID(fmt.Sprintf("r%d", i+1))
		c.Logger = hlog
		c.MaxAppendEntries = 256
		c.SnapshotThreshold = 1 << 40 // the ceiling measures the log, not snapshots
		confs[i] = c
		ps[i] = parts{logs: logs, store: store, snaps: raft.NewInmemSnapshotStore(), trans: trans}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: c.LocalID, Address: trans.LocalAddr()})
	}
	for i := range 3 {
		r, err := raft.NewRaft(confs[i], &countFSM{}, ps[i].logs, ps[i].store, ps[i].snaps, ps[i].trans)
		if err != nil {
			rr.close()
			return nil, err
		}
		rr.nodes = append(rr.nodes, r)
	}
	if err := rr.nodes[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		rr.close()
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for rr.leader() == nil {
		select {
		case <-wctx.Done():
			rr.close()
			return nil, fmt.Errorf("raw raft: no leader: %w", wctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return rr, nil
}

func (rr *rawRaft) leader() *raft.Raft {
	for _, r := range rr.nodes {
		if r.State() == raft.Leader {
			return r
		}
	}
	return nil
}

func (rr *rawRaft) close() {
	for _, r := range rr.nodes {
		_ = r.Shutdown().Error()
	}
	for _, t := range rr.trans {
		_ = t.Close()
	}
	for _, s := range rr.stores {
		_ = s.Close()
	}
}

// op applies one 256-byte entry on the leader and waits for its commit.
func (rr *rawRaft) op() Op {
	entry := make([]byte, 256)
	return func(ctx context.Context, _ int) (int, error) {
		l := rr.leader()
		if l == nil {
			return 0, raft.ErrNotLeader
		}
		return 1, l.Apply(entry, 10*time.Second).Error()
	}
}
