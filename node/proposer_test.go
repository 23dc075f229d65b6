package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/internal/clock"
	"github.com/writ-dev/writ/rpc"
)

// fakeRaft records each entry's command count; every entry's future waits
// for release.
type fakeRaft struct {
	release chan struct{}
	mu      sync.Mutex
	entries []int
	kicks   int              // empty entries without a request id: the proposer's kicks
	logged  []*fsmpb.Command // every entry, decoded
	exts    [][]byte         // every entry's extensions
}

func (r *fakeRaft) Apply(data []byte, _ time.Duration) raft.ApplyFuture {
	cmd, err := fsm.Decode(data)
	n := 1
	if b := cmd.GetBatch(); b != nil {
		n = len(b.GetCommands())
	}
	r.mu.Lock()
	r.entries = append(r.entries, n)
	r.logged = append(r.logged, cmd)
	r.exts = append(r.exts, nil)
	if cmd.GetNoop() != nil && cmd.GetHeader().GetRequestId() == "" {
		r.kicks++
	}
	r.mu.Unlock()
	return &fakeFuture{release: r.release, n: n, err: err}
}

func (r *fakeRaft) ApplyLog(l raft.Log, timeout time.Duration) raft.ApplyFuture {
	f := r.Apply(l.Data, timeout)
	r.mu.Lock()
	r.exts[len(r.exts)-1] = l.Extensions
	r.mu.Unlock()
	return f
}

func (r *fakeRaft) kicked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kicks
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

// TestProposerAnnounces: an entry holding revocations announces them in its
// extensions and their results name the holders; an entry with none
// announces nothing, and its results are the FSM's own.
func TestProposerAnnounces(t *testing.T) {
	fr := &fakeRaft{release: make(chan struct{})}
	close(fr.release)
	p := newProposer(fr, clock.Real{}, slog.New(slog.DiscardHandler), time.Hour, nil)
	defer p.close()
	p.holders = func(uint64) []string { return []string{"n2"} }
	issue := &fsmpb.Command{Header: &fsmpb.Header{RequestId: "r1"}, Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}}
	res, err := p.submit(context.Background(), []*fsmpb.Command{issue}, false)
	if err != nil || len(res[0].GetHolders()) != 0 {
		t.Fatalf("a write with no revocation: %v, holders %v", err, res)
	}
	revoke := &fsmpb.Command{Header: &fsmpb.Header{RequestId: "r2"}, Payload: &fsmpb.Command_RevokeRole{RevokeRole: &fsmpb.RevokeRole{Name: "ci"}}}
	res, err = p.submit(context.Background(), []*fsmpb.Command{revoke, issue}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := res[0].GetHolders(); len(got) != 1 || got[0] != "n2" {
		t.Errorf("revocation result holders %v, want [n2]", got)
	}
	if got := res[1].GetHolders(); len(got) != 0 {
		t.Errorf("the batch's other result has holders %v", got)
	}
	fr.mu.Lock()
	exts := append([][]byte(nil), fr.exts...)
	fr.mu.Unlock()
	if len(exts) < 2 || exts[0] != nil {
		t.Fatalf("extensions %v: want none on the first entry", exts)
	}
	ps, err := fsm.DecodeAnnounce(exts[1], 5)
	if err != nil || len(ps) != 1 || ps[0].Kind != fsm.RevocationRole || ps[0].ID != "ci" || ps[0].Index != 5 {
		t.Errorf("second entry announces %+v, %v; want the role revocation", ps, err)
	}

	// While the leader waits for holders, the entry's in-flight slot is
	// free: the next write goes at once instead of being held behind it.
	waiting, gate := make(chan struct{}), make(chan struct{})
	p.holders = func(uint64) []string {
		close(waiting)
		<-gate
		return nil
	}
	revoked := make(chan error, 1)
	go func() {
		cmd := &fsmpb.Command{Header: &fsmpb.Header{RequestId: "r3"}, Payload: &fsmpb.Command_RevokeRole{RevokeRole: &fsmpb.RevokeRole{Name: "cd"}}}
		_, err := p.submit(context.Background(), []*fsmpb.Command{cmd}, false)
		revoked <- err
	}()
	<-waiting
	before := len(fr.sizes())
	next := &fsmpb.Command{Header: &fsmpb.Header{RequestId: "r4"}, Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.submit(ctx, []*fsmpb.Command{next}, false); err != nil {
		t.Fatalf("the write after the revocation: %v (held behind the wait for holders?)", err)
	}
	if got := len(fr.sizes()); got != before+1 {
		t.Errorf("entries %d, want %d: the write after the revocation waited for its holders", got, before+1)
	}
	close(gate)
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
}

// TestProposerHolds: with softInflight entries in flight, later writes wait
// and then ride in one entry; a revocation is never held.
func TestProposerHolds(t *testing.T) {
	fr := &fakeRaft{release: make(chan struct{})}
	p := newProposer(fr, clock.Real{}, slog.New(slog.DiscardHandler), 0, nil)
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

// TestProposerKick: a pushed revocation's kick waits for the kick delay,
// and revocations applied while one is pending share it; retiring a
// signing key (not pushed: its waiters need the followers' apply) kicks at
// once, and so does every revocation with no delay.
func TestProposerKick(t *testing.T) {
	write := func(p *proposer, cmd *fsmpb.Command) {
		t.Helper()
		cmd.Header = &fsmpb.Header{RequestId: "r"}
		if _, err := p.submit(context.Background(), []*fsmpb.Command{cmd}, false); err != nil {
			t.Fatal(err)
		}
	}
	revoke := func() *fsmpb.Command {
		return &fsmpb.Command{Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: "l1"}}}
	}
	retire := &fsmpb.Command{Payload: &fsmpb.Command_RetireSigningKey{RetireSigningKey: &fsmpb.RetireSigningKey{Kid: "k1"}}}
	issue := &fsmpb.Command{Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}}

	t.Run("no delay", func(t *testing.T) {
		fr := &fakeRaft{release: make(chan struct{})}
		close(fr.release)
		p := newProposer(fr, clock.Real{}, slog.New(slog.DiscardHandler), 0, nil)
		defer p.close()
		write(p, issue)
		if k := fr.kicked(); k != 0 {
			t.Fatalf("a write that is not urgent kicked (%d)", k)
		}
		write(p, revoke())
		if k := fr.kicked(); k != 1 { // kicked before the result is handed back
			t.Fatalf("kicks after a revocation with no delay: %d, want 1", k)
		}
	})
	t.Run("delayed and shared", func(t *testing.T) {
		fr := &fakeRaft{release: make(chan struct{})}
		close(fr.release)
		p := newProposer(fr, clock.Real{}, slog.New(slog.DiscardHandler), time.Hour, nil)
		defer p.close()
		var mu sync.Mutex
		var timers []func()
		p.after = func(d time.Duration, f func()) {
			if d != time.Hour {
				t.Errorf("kick scheduled after %v, want the delay", d)
			}
			mu.Lock()
			timers = append(timers, f)
			mu.Unlock()
		}
		scheduled := func() int { mu.Lock(); defer mu.Unlock(); return len(timers) }
		write(p, revoke())
		write(p, revoke())
		if k, n := fr.kicked(), scheduled(); k != 0 || n != 1 {
			t.Fatalf("two revocations within the delay: %d kicks, %d scheduled; want 0 and 1", k, n)
		}
		write(p, retire)
		if k := fr.kicked(); k != 1 {
			t.Fatalf("retiring a signing key: %d kicks, want 1 at once", k)
		}
		mu.Lock()
		fire := timers[0]
		mu.Unlock()
		fire()
		if k := fr.kicked(); k != 2 {
			t.Fatalf("after the delay: %d kicks, want 2", k)
		}
		write(p, revoke()) // the pending kick went: a new one is scheduled
		if n := scheduled(); n != 2 {
			t.Fatalf("a revocation after the kick: %d scheduled, want 2", n)
		}
	})
}

// TestProposerVersionGate: at cluster FSM version 1 the proposer lowers a
// pruning policy put and stamps its entry 1, refuses a command with no
// version-1 form (ErrFSMVersion), and at
// version 2 writes the put as given, stamped 2.
func TestProposerVersionGate(t *testing.T) {
	fr := &fakeRaft{release: make(chan struct{})}
	close(fr.release)
	var cv atomic.Uint32
	cv.Store(1)
	p := newProposer(fr, clock.Real{}, slog.New(slog.DiscardHandler), 0, cv.Load)
	defer p.close()
	put := func() *fsmpb.Command {
		return &fsmpb.Command{Header: &fsmpb.Header{RequestId: "put"}, Payload: &fsmpb.Command_PutPolicySet{PutPolicySet: &fsmpb.PutPolicySet{
			PolicySet: &fsmpb.PolicySet{Name: "prod", Cedar: "permit (principal, action, resource);"}, KeepVersions: 50,
		}}}
	}
	last := func() *fsmpb.Command {
		fr.mu.Lock()
		defer fr.mu.Unlock()
		return fr.logged[len(fr.logged)-1]
	}
	ctx := context.Background()
	if _, err := p.submit(ctx, []*fsmpb.Command{put()}, false); err != nil {
		t.Fatal(err)
	}
	if e := last(); e.GetHeader().GetMinFsmVersion() != 1 || e.GetPutPolicySet().GetKeepVersions() != 0 {
		t.Errorf("at version 1: entry stamped %d with keep_versions %d, want 1 and 0", e.GetHeader().GetMinFsmVersion(), e.GetPutPolicySet().GetKeepVersions())
	}
	needs2 := &fsmpb.Command{Header: &fsmpb.Header{RequestId: "n", MinFsmVersion: 2}, Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}}
	_, err := p.submit(ctx, []*fsmpb.Command{needs2}, false)
	if !errors.Is(err, rpc.ErrFSMVersion) {
		t.Errorf("a version-2 command at version 1: %v, want ErrFSMVersion", err)
	}
	cv.Store(2)
	if _, err := p.submit(ctx, []*fsmpb.Command{put()}, false); err != nil {
		t.Fatal(err)
	}
	if e := last(); e.GetHeader().GetMinFsmVersion() != 2 || e.GetPutPolicySet().GetKeepVersions() != 50 {
		t.Errorf("at version 2: entry stamped %d with keep_versions %d, want 2 and 50", e.GetHeader().GetMinFsmVersion(), e.GetPutPolicySet().GetKeepVersions())
	}
}
