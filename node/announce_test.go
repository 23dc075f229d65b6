package node

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/writ-dev/writ/fsm"
)

func announceLog(t *testing.T, index uint64, ps ...fsm.Pending) *raft.Log {
	t.Helper()
	ext, err := fsm.EncodeAnnounce(ps)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: []byte{fsm.FormatProtoV1}, Extensions: ext}
}

// TestAnnouncingLogs: storing an entry puts its announced revocations in the
// overlay at its index; the floor starts at the log's last index, rises to
// an entry whose revocations the overlay refuses or cannot read, and falls
// below a truncated suffix.
func TestAnnouncingLogs(t *testing.T) {
	inner := raft.NewInmemStore()
	for i := uint64(1); i <= 3; i++ {
		if err := inner.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{fsm.FormatProtoV1}}); err != nil {
			t.Fatal(err)
		}
	}
	f := fsm.New(fsm.Config{})
	s, err := newAnnouncingLogs(inner, f, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.floor.Load(); got != 3 {
		t.Fatalf("floor at open: %d, want the last index 3", got)
	}
	if s.caughtUp(2) || !s.caughtUp(3) {
		t.Fatal("caughtUp must need the floor applied")
	}

	// An entry without extensions (issuance) is only stored.
	if err := s.StoreLog(&raft.Log{Index: 4, Term: 1, Type: raft.LogCommand, Data: []byte{fsm.FormatProtoV1}}); err != nil {
		t.Fatal(err)
	}
	if f.OverlayLen() != 0 {
		t.Fatalf("overlay %d after an entry with nothing announced", f.OverlayLen())
	}
	// A revocation entry is enforced once stored.
	if err := s.StoreLogs([]*raft.Log{
		announceLog(t, 5, fsm.Pending{Kind: fsm.RevocationLease, ID: "l1"}, fsm.Pending{Kind: fsm.RevocationRole, ID: "r"}),
	}); err != nil {
		t.Fatal(err)
	}
	if f.OverlayLen() != 2 {
		t.Fatalf("overlay holds %d targets, want 2", f.OverlayLen())
	}
	if got := s.floor.Load(); got != 3 {
		t.Fatalf("floor %d after an enforced entry, want 3", got)
	}
	var stored raft.Log
	if err := s.GetLog(5, &stored); err != nil || len(stored.Extensions) == 0 {
		t.Fatalf("entry 5 not stored with its extensions: %v %+v", err, stored)
	}

	// Extensions that do not decode raise the floor to the entry.
	bad := &raft.Log{Index: 6, Term: 1, Type: raft.LogCommand, Data: []byte{fsm.FormatProtoV1}, Extensions: []byte{0xff, 0xff}}
	if err := s.StoreLog(bad); err != nil {
		t.Fatal(err)
	}
	if got := s.floor.Load(); got != 6 {
		t.Fatalf("floor %d after unreadable extensions, want 6", got)
	}
	// A truncated suffix never committed: the floor falls below it.
	if err := s.DeleteRange(6, 6); err != nil {
		t.Fatal(err)
	}
	if got := s.floor.Load(); got != 5 {
		t.Fatalf("floor %d after truncating 6, want 5", got)
	}
	// A full overlay refuses: the floor rises to the entry.
	full := make([]fsm.Pending, 0, fsm.MaxOverlay)
	for i := range fsm.MaxOverlay {
		full = append(full, fsm.Pending{Kind: fsm.RevocationLease, ID: fmt.Sprintf("x%d", i)})
	}
	if err := s.StoreLog(announceLog(t, 7, full...)); err != nil {
		t.Fatal(err)
	}
	if got := s.floor.Load(); got != 7 {
		t.Fatalf("floor %d after the overlay refused, want 7", got)
	}
	// Compaction from the front leaves it, though the FSM is below it.
	if err := s.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	if got := s.floor.Load(); got != 7 {
		t.Fatalf("floor %d after a compaction from the front, want 7", got)
	}
	// Deleting past the end of the log, above the floor, leaves it too.
	if err := s.DeleteRange(8, 9); err != nil {
		t.Fatal(err)
	}
	if got := s.floor.Load(); got != 7 {
		t.Fatalf("floor %d after deleting above it, want 7", got)
	}
}

// TestAppendTracker: only successful appends that carried entries count, a
// voter's noted index only grows within a term, and a higher term forgets
// the last one's.
func TestAppendTracker(t *testing.T) {
	entries := func(lo, hi uint64) []*raft.Log {
		var out []*raft.Log
		for i := lo; i <= hi; i++ {
			out = append(out, &raft.Log{Index: i})
		}
		return out
	}
	ok := &raft.AppendEntriesResponse{Success: true}
	var a appendTracker
	a.note("b", &raft.AppendEntriesRequest{Term: 2, Entries: entries(1, 10)}, ok)
	a.note("c", &raft.AppendEntriesRequest{Term: 2, Entries: entries(1, 8)}, ok)
	a.note("c", &raft.AppendEntriesRequest{Term: 2, Entries: entries(9, 12)}, &raft.AppendEntriesResponse{})              // refused
	a.note("c", &raft.AppendEntriesRequest{Term: 2}, ok)                                                                  // heartbeat
	a.note("b", &raft.AppendEntriesRequest{Term: 2, Entries: entries(3, 4)}, ok)                                          // a late, older answer
	a.note("d", &raft.AppendEntriesRequest{Term: 1, Entries: entries(1, 20)}, &raft.AppendEntriesResponse{Success: true}) // an older term
	for _, tc := range []struct {
		index uint64
		want  []string
	}{{8, []string{"b", "c"}}, {9, []string{"b"}}, {10, []string{"b"}}, {11, nil}} {
		got := a.waitAll([]string{"b", "c", "d"}, tc.index, 0)
		if !slices.Equal(got, tc.want) {
			t.Errorf("holders(%d) = %v, want %v", tc.index, got, tc.want)
		}
	}
	a.note("c", &raft.AppendEntriesRequest{Term: 3, Entries: entries(9, 9)}, ok)
	if got := a.waitAll([]string{"b", "c", "d"}, 8, 0); !slices.Equal(got, []string{"c"}) {
		t.Errorf("after a new term, holders(8) = %v, want [c]: b's answer was about the old term's log", got)
	}
}

// TestAppendTrackerWaitAll: waitAll returns at once when every server
// covers the index, returns when the missing answer arrives, and gives up
// after its wait with the servers that do.
func TestAppendTrackerWaitAll(t *testing.T) {
	ok := &raft.AppendEntriesResponse{Success: true}
	var a appendTracker
	a.note("b", &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 5}}}, ok)
	if got := a.waitAll([]string{"b"}, 5, time.Hour); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("waitAll = %v, want [b]", got)
	}
	if got := a.waitAll([]string{"b", "c"}, 5, time.Millisecond); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("waitAll past its wait = %v, want [b]", got)
	}
	done := make(chan []string)
	go func() { done <- a.waitAll([]string{"b", "c"}, 5, time.Hour) }()
	a.note("c", &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 4}}}, ok) // not enough
	a.note("c", &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 5}}}, ok)
	if got := <-done; !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("waitAll after c's answer = %v, want [b c]", got)
	}
}
