package audit

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// stalledLog is a Log whose streams have a one-record queue and no
// spooler: nothing drains a queue unless the test does, so a full queue
// stays full for as long as the test wants.
func stalledLog(wait time.Duration) *Log {
	l := &Log{cfg: Config{QueueWait: wait}, deps: Deps{Now: time.Now}, quit: make(chan struct{})}
	l.m = newMetrics(nil, l)
	for i, name := range Streams {
		l.streams[i] = &stream{l: l, name: name, queue: make(chan *Event, 1)}
	}
	return l
}

func use(id string) *Event {
	return &Event{Type: TypeUse, Method: "BatchAuthorize", Actor: workload("ci/a"), Decision: Allow, DecisionID: id}
}

func (s *stream) droppedFull() uint64 { return s.dropped[0].Load() }

// TestRecordByWaitsForRoom: with the queue full, RecordBy waits, and the
// record is queued (not dropped) once the spooler takes one.
func TestRecordByWaitsForRoom(t *testing.T) {
	l := stalledLog(time.Minute)
	s := l.streams[1]
	l.RecordBy(use("d_1"), time.Time{}) // fills the queue
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.RecordBy(use("d_2"), time.Time{})
	}()
	eventually(t, "the second record waiting", func() error {
		if n := testutil.ToFloat64(l.m.queueWaits.WithLabelValues(string(s.name))); n != 1 {
			return fmt.Errorf("%v waits counted", n)
		}
		return nil
	})
	select {
	case <-done:
		t.Fatal("RecordBy returned while the queue was full")
	default:
	}
	if got := (<-s.queue).DecisionID; got != "d_1" { // the spooler takes one
		t.Fatalf("first queued %s, want d_1", got)
	}
	<-done
	if got := (<-s.queue).DecisionID; got != "d_2" {
		t.Fatalf("then %s, want d_2", got)
	}
	if d := s.droppedFull(); d != 0 {
		t.Fatalf("%d dropped, want 0", d)
	}
}

// TestRecordByGivesUp: a record that finds no room by its deadline is
// dropped and counted (its gap record follows); with queue_wait negative,
// and with Record, it is dropped without waiting; closing the log releases
// a waiting caller.
func TestRecordByGivesUp(t *testing.T) {
	cases := []struct {
		name     string
		wait     time.Duration
		record   func(l *Log, ev *Event)
		wantWait float64
	}{
		{"deadline passes", time.Minute, func(l *Log, ev *Event) { l.RecordBy(ev, time.Now().Add(20*time.Millisecond)) }, 1},
		{"deadline already past", time.Minute, func(l *Log, ev *Event) { l.RecordBy(ev, time.Now().Add(-time.Second)) }, 0},
		{"queue_wait caps the deadline", 20 * time.Millisecond, func(l *Log, ev *Event) { l.RecordBy(ev, time.Now().Add(time.Hour)) }, 1},
		{"queue_wait negative", -1, func(l *Log, ev *Event) { l.RecordBy(ev, time.Time{}) }, 0},
		{"Record never waits", time.Minute, func(l *Log, ev *Event) { l.Record(ev) }, 0},
		{"shared batch deadline", time.Minute, func(l *Log, ev *Event) { l.RecordBy(ev, l.QueueDeadline().Add(-time.Minute)) }, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := stalledLog(c.wait)
			s := l.streams[1]
			l.Record(use("d_1"))
			c.record(l, use("d_2"))
			if d := s.droppedFull(); d != 1 {
				t.Fatalf("%d dropped, want 1", d)
			}
			if n := testutil.ToFloat64(l.m.queueWaits.WithLabelValues(string(s.name))); n != c.wantWait {
				t.Fatalf("%v waits counted, want %v", n, c.wantWait)
			}
			if got := (<-s.queue).DecisionID; got != "d_1" {
				t.Fatalf("queued %s, want d_1", got)
			}
		})
	}
	t.Run("close releases a waiter", func(t *testing.T) {
		l := stalledLog(time.Hour)
		s := l.streams[1]
		l.Record(use("d_1"))
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.RecordBy(use("d_2"), time.Time{})
		}()
		eventually(t, "the record waiting", func() error {
			if testutil.ToFloat64(l.m.queueWaits.WithLabelValues(string(s.name))) != 1 {
				return errors.New("not waiting yet")
			}
			return nil
		})
		close(l.quit)
		<-done
		if d := s.droppedFull(); d != 1 {
			t.Fatalf("%d dropped, want 1", d)
		}
	})
}

// TestRecordByFilters: a filter that drops a record on purpose drops it
// before it could wait.
func TestRecordByFilters(t *testing.T) {
	l := stalledLog(time.Hour)
	s := l.streams[1]
	s.filters = []*filterState{{Filter: Filter{Name: "none", Types: []Type{TypeUse}, SampleRate: 0}}}
	l.Record(&Event{Type: TypeLogin, Actor: workload("ci/a")}) // fills the queue
	l.RecordBy(use("d_2"), time.Time{})                        // filtered: returns at once
	if n := s.filters[0].dropped.Load(); n != 1 {
		t.Fatalf("filter dropped %d, want 1", n)
	}
	if d := s.droppedFull(); d != 0 {
		t.Fatalf("%d dropped as queue_full, want 0", d)
	}
}

func TestQueueWaitDefault(t *testing.T) {
	for _, c := range []struct {
		in, want time.Duration
	}{{0, 100 * time.Millisecond}, {time.Second, time.Second}, {-5 * time.Second, -1}} {
		eff, err := Config{Dir: t.TempDir(), QueueWait: c.in}.Effective()
		if err != nil {
			t.Fatal(err)
		}
		if eff.QueueWait != c.want {
			t.Errorf("queue_wait %v: effective %v, want %v", c.in, eff.QueueWait, c.want)
		}
	}
}
