package node

import (
	"bufio"
	"io"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/writ-dev/writ/fsm"
)

// raftFSM adapts fsm.FSM (which knows nothing of Raft) to raft.FSM.
type raftFSM struct {
	f   *fsm.FSM
	lag prometheus.Observer // apply lag from the leader's append; may be nil
}

// Apply is called by raft's FSM goroutine, one entry at a time, in log order.
func (a raftFSM) Apply(l *raft.Log) any {
	res := a.f.Apply(l.Index, l.Data)
	if a.lag != nil && !l.AppendedAt.IsZero() {
		if d := time.Since(l.AppendedAt); d < time.Minute {
			a.lag.Observe(d.Seconds())
		}
	}
	return res
}

func (a raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	return fsmSnapshot{a.f.Snapshot()}, nil
}

func (a raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return a.f.Restore(bufio.NewReaderSize(rc, 1<<16))
}

type fsmSnapshot struct{ s *fsm.Snapshot }

// Persist streams the snapshot; it runs concurrently with Apply.
func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<16)
	if _, err := s.s.WriteTo(w); err != nil {
		_ = sink.Cancel()
		return err
	}
	if err := w.Flush(); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}
