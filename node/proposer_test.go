package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/internal/clock"
)

// fakeRaft records each entry's command count; every entry's future waits
// for release.
type fakeRaft struct {
	release chan struct{}
	mu      sync.Mutex
	entries []int
}

func (r *fakeRaft) Apply(data []byte, _ time.Duration) raft.ApplyFuture {
	cmd, err := fsm.Decode(data)
	n := 1
	if b := cmd.GetBatch(); b != nil {
		n = len(b.GetCommands())
	}
	r.mu.Lock()
	r.entries = append(r.entries, n)
	r.mu.Unlock()
	return &fakeFuture{release: r.release, n: n, err: err}
}

func (r *fakeRaft) sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.entries...)
}

type fakeFuture struct {
	release <-chan struct{}
	n       int
	err     error
}

func (f *fakeFuture) Error() error {
	<-f.release
	return f.err
}

func (f *fakeFuture) Response() any {
	out := make([]*fsmpb.Result, f.n)
	for i := range out {
		out[i] = &fsmpb.Result{}
	}
	return out
}

func (f *fakeFuture) Index() uint64 { return 0 }

// TestProposerHolds: with softInflight entries in flight, later writes wait
// and then ride in one entry; a revocation is never held.
func TestProposerHolds(t *testing.T) {
	fr := &fakeRaft{release: make(chan struct{})}
	p := newProposer(fr, clock.Real{}, slog.New(slog.DiscardHandler))
	defer p.close()
	errs := make(chan error, 32)
	submit := func(i int, urgent bool) {
		cmd := &fsmpb.Command{Header: &fsmpb.Header{RequestId: fmt.Sprintf("r%d", i)}, Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}}
		if urgent {
			cmd.Payload = &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: "l1"}}
		}
		res, err := p.submit(context.Background(), []*fsmpb.Command{cmd}, false)
		if err == nil && len(res) != 1 {
			err = fmt.Errorf("write %d: %d results", i, len(res))
		}
		errs <- err
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		waitUntil(t, what, cond, func() string { return fmt.Sprintf("entries %v, %d taken", fr.sizes(), p.taken.Load()) })
	}
	// Lone writes go at once, one entry each.
	for i := range softInflight {
		go submit(i, false)
		waitFor("a lone write's entry", func() bool { return len(fr.sizes()) == i+1 })
	}
	// Ten more are taken off the queue but held: no new entry.
	const held = 10
	for i := range held {
		go submit(10+i, false)
	}
	waitFor("the held writes to be taken", func() bool { return p.taken.Load() == softInflight+held })
	if got := fr.sizes(); len(got) != softInflight {
		t.Fatalf("entries %v with %d in flight: a write was not held", got, softInflight)
	}
	// A revocation joins them and takes them out at once, in one entry.
	go submit(99, true)
	waitFor("the revocation's entry", func() bool { return len(fr.sizes()) == softInflight+1 })
	if got := fr.sizes(); got[softInflight] != held+1 {
		t.Errorf("entries %v: want the %d held writes and the revocation in one entry", got, held)
	}
	close(fr.release)
	for range softInflight + held + 1 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
