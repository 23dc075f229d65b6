package node

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/writ-dev/writ/fsm"
)

// Announced revocations: a replica enforces a revocation from the moment it
// stores the entry, and the leader learns which voters did from their append
// responses, so Revoke need not push to them after the commit. See DESIGN.md
// ("Announced revocations: in force when stored").
//
// The leader's proposer puts what an entry revokes in the entry's Raft
// extensions (fsm.Announce). announcingLogs, the log store every replica's
// Raft writes through, installs those revocations in the FSM's overlay at
// the entry's index once the entry is durable, before Raft answers the
// append. trackingTransport, on the leader, notes per voter the highest
// index a successful append in the current term covered. So once a
// revocation at index i has committed, every voter whose noted index is at
// least i holds it in its overlay or has applied it: the leader lists them
// in the revocation's result (Result.holders) and AwaitEverywhere sends them
// nothing.
//
// Enforcing an entry before it commits is safe for the reason the overlay
// is: a revocation only makes leases invalid. If the entry never commits,
// the overlay entry still leaves when the replica applies the index, whatever
// entry the index then holds, so nothing is refused for longer than that.
//
// A replica's overlay is memory only, so a restart would lose what it
// enforced between storing an entry and applying it. The store's floor
// covers that: at open it is the log's last index, and the node answers no
// stale read (fresh) until it has applied the floor. Every entry it ever
// acknowledged is at or below it. A suffix the new leader truncates was never
// committed, so DeleteRange lowers the floor below it; a compaction from the
// front does not move it. An entry whose
// revocation the overlay refuses (full, or bad extensions) raises the floor
// to its index: the replica then answers no read until it applies it.

// announcingLogs is the Raft log store with the announce hook; see above.
type announcingLogs struct {
	raft.LogStore
	fsm   *fsm.FSM
	floor atomic.Uint64
	log   *slog.Logger
}

func newAnnouncingLogs(inner raft.LogStore, f *fsm.FSM, log *slog.Logger) (*announcingLogs, error) {
	last, err := inner.LastIndex()
	if err != nil {
		return nil, err
	}
	s := &announcingLogs{LogStore: inner, fsm: f, log: log}
	s.floor.Store(last)
	return s, nil
}

func (s *announcingLogs) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *announcingLogs) StoreLogs(logs []*raft.Log) error {
	if err := s.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	for _, l := range logs {
		if l.Type == raft.LogCommand && len(l.Extensions) > 0 {
			s.announce(l)
		}
	}
	return nil
}

func (s *announcingLogs) announce(l *raft.Log) {
	ps, err := fsm.DecodeAnnounce(l.Extensions, l.Index)
	if err != nil {
		s.log.Warn("log entry with unreadable extensions: no stale reads until it is applied", "index", l.Index, "err", err)
		s.raise(l.Index)
		return
	}
	if !s.fsm.OverlayAll(ps) {
		s.raise(l.Index)
	}
}

// DeleteRange lowers the floor below a truncated suffix: a deletion that
// reaches the end of the log removes entries that never committed. A
// compaction from the front leaves it alone, even while the FSM is still
// below the floor (a restarted node may snapshot while it catches up). A
// compaction of the whole log is at or below the applied index, so lowering
// the floor then changes nothing.
func (s *announcingLogs) DeleteRange(lo, hi uint64) error {
	last, err := s.LogStore.LastIndex()
	if err != nil {
		return err
	}
	if err := s.LogStore.DeleteRange(lo, hi); err != nil {
		return err
	}
	if hi < last {
		return nil
	}
	for {
		f := s.floor.Load()
		if lo == 0 || lo > f || s.floor.CompareAndSwap(f, lo-1) {
			return nil
		}
	}
}

func (s *announcingLogs) raise(index uint64) {
	for {
		f := s.floor.Load()
		if f >= index || s.floor.CompareAndSwap(f, index) {
			return
		}
	}
}

// caughtUp reports whether the FSM has applied the floor.
func (s *announcingLogs) caughtUp(applied uint64) bool { return applied >= s.floor.Load() }

// appendTracker notes, per voter, the highest index a successful append of
// the latest term seen covered: in one term the leader's log only grows, so
// a voter that answered success through index k holds the leader's entries
// up to k. A higher term clears it (the same node may lead again with a
// different suffix).
type appendTracker struct {
	mu     sync.Mutex
	term   uint64
	stored map[string]uint64
	// changed is closed by the next note while someone waits (waitAll).
	changed chan struct{}
}

func (a *appendTracker) note(id raft.ServerID, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if req == nil || resp == nil || !resp.Success || len(req.Entries) == 0 {
		return
	}
	last := req.Entries[len(req.Entries)-1].Index
	a.mu.Lock()
	defer a.mu.Unlock()
	if req.Term > a.term || a.stored == nil {
		a.term = max(a.term, req.Term)
		a.stored = map[string]uint64{}
	}
	if req.Term == a.term && last > a.stored[string(id)] {
		a.stored[string(id)] = last
		if a.changed != nil {
			close(a.changed)
			a.changed = nil
		}
	}
}

// waitAll waits up to d for every voter in ids to cover index and returns
// those that do: on an idle cluster the voter whose answer did not make the
// commit answers a fraction of a push's round trip later.
func (a *appendTracker) waitAll(ids []string, index uint64, d time.Duration) []string {
	var timer *time.Timer
	for {
		a.mu.Lock()
		var got []string
		for _, id := range ids {
			if a.stored[id] >= index {
				got = append(got, id)
			}
		}
		if len(got) == len(ids) || d <= 0 {
			a.mu.Unlock()
			return got
		}
		if a.changed == nil {
			a.changed = make(chan struct{})
		}
		ch := a.changed
		a.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-timer.C:
			d = 0
		}
	}
}

// trackingTransport is the Raft transport with the leader's append
// tracking. Embedding keeps NetworkTransport's Close and RequestPreVote, so
// Raft still finds WithClose and WithPreVote.
type trackingTransport struct {
	*raft.NetworkTransport
	t *appendTracker
}

func (tt *trackingTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := tt.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil {
		tt.t.note(id, args, resp)
	}
	return err
}

func (tt *trackingTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := tt.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	tp := &trackingPipeline{AppendPipeline: p, out: make(chan raft.AppendFuture, 128), stop: make(chan struct{})}
	go tp.relay(id, tt.t)
	return tp, nil
}

// trackingPipeline notes each answered append before Raft's replication
// sees it.
type trackingPipeline struct {
	raft.AppendPipeline
	out  chan raft.AppendFuture
	stop chan struct{}
	once sync.Once
}

func (tp *trackingPipeline) relay(id raft.ServerID, t *appendTracker) {
	in := tp.AppendPipeline.Consumer()
	for {
		select {
		case f := <-in:
			if f.Error() == nil {
				t.note(id, f.Request(), f.Response())
			}
			select {
			case tp.out <- f:
			case <-tp.stop:
				return
			}
		case <-tp.stop:
			return
		}
	}
}

func (tp *trackingPipeline) Consumer() <-chan raft.AppendFuture { return tp.out }

func (tp *trackingPipeline) Close() error {
	tp.once.Do(func() { close(tp.stop) })
	return tp.AppendPipeline.Close()
}

// announceVersion is the FSM version from which every replica's log store
// enforces announced revocations (fsm.Version 4).
const announceVersion = 4

// revocationHolders lists the other servers known to enforce the
// revocation committed at index, for its result, waiting up to HolderWait
// for those whose append answer has not come yet; none while any server
// may run an older version, whose log store ignores announcements.
func (n *Node) revocationHolders(index uint64) []string {
	if n.tracker == nil || n.ClusterFSMVersion() < announceVersion {
		return nil
	}
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return nil // nobody named: Revoke pushes to every peer
	}
	var others []string // voters and non-voters: AwaitEverywhere covers both
	for _, srv := range cf.Configuration().Servers {
		if string(srv.ID) != n.cfg.NodeID {
			others = append(others, string(srv.ID))
		}
	}
	return n.tracker.waitAll(others, index, n.cfg.Raft.HolderWait)
}
