package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// echoForwarder answers every command with "r:"+command; every call waits
// for release, so callers queue up behind the calls in flight. calls counts
// the Forward calls made.
func echoForwarder(t *testing.T, fail error) (*forwarder, *atomic.Int64, chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var calls atomic.Int64
	release := make(chan struct{})
	send := func(ctx context.Context, _ writv1connect.NodeServiceClient, req *writv1.ForwardRequest) (*writv1.ForwardResponse, error) {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if fail != nil {
			return nil, fail
		}
		resp := &writv1.ForwardResponse{}
		for _, c := range req.GetCommands() {
			resp.Results = append(resp.Results, append([]byte("r:"), c...))
		}
		return resp, nil
	}
	return newForwarder(ctx, time.Minute, func(string) writv1connect.NodeServiceClient { return nil }, send), &calls, release
}

// TestForwarderBatches: callers waiting behind a call in flight share the
// next calls, and each gets exactly its own results, in order.
func TestForwarderBatches(t *testing.T) {
	f, calls, release := echoForwarder(t, nil)
	const callers = 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmds := [][]byte{[]byte(fmt.Sprintf("%d-a", i)), []byte(fmt.Sprintf("%d-b", i))}
			got, err := f.forward(context.Background(), "leader:1", cmds, false)
			if err != nil {
				errs <- err
				return
			}
			if len(got) != 2 || string(got[0]) != "r:"+string(cmds[0]) || string(got[1]) != "r:"+string(cmds[1]) {
				errs <- fmt.Errorf("caller %d got %q", i, got)
			}
		}()
	}
	// Wait until every caller is in a call, held by the loop or queued
	// while the calls are blocked.
	queued := func() int64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return int64(len(f.queues["leader:1"]))
	}
	deadline := time.Now().Add(30 * time.Second)
	for f.taken.Load()/2+queued() < callers && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling the fake's counters, bounded by the deadline
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := calls.Load(); n >= callers {
		t.Errorf("%d Forward calls for %d callers: nothing was batched", n, callers)
	}
}

// TestForwarderSharedError: a failed call fails every caller in it.
func TestForwarderSharedError(t *testing.T) {
	boom := errors.New("leader gone")
	f, _, release := echoForwarder(t, boom)
	close(release)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.forward(context.Background(), "leader:1", [][]byte{[]byte{byte(i)}}, false); !errors.Is(err, boom) {
				t.Errorf("caller %d: %v, want the shared error", i, err)
			}
		}()
	}
	wg.Wait()
}

// TestForwarderTooBig: a write over the batch limits is sent on its own.
func TestForwarderTooBig(t *testing.T) {
	f, calls, release := echoForwarder(t, nil)
	close(release)
	big := make([][]byte, maxForwardItems+1)
	for i := range big {
		big[i] = []byte{1}
	}
	got, err := f.forward(context.Background(), "leader:1", big, false)
	if err != nil || len(got) != len(big) || calls.Load() != 1 {
		t.Fatalf("%d results, %d calls, %v", len(got), calls.Load(), err)
	}
}

// TestForwarderHolds: while softForwardInflight calls are out, later writes
// wait and then share one call; a revocation is never held.
func TestForwarderHolds(t *testing.T) {
	f, calls, release := echoForwarder(t, nil)
	forward := func(b byte, urgent bool, errs chan<- error) {
		got, err := f.forward(context.Background(), "leader:1", [][]byte{{b}}, urgent)
		if err == nil && (len(got) != 1 || string(got[0]) != "r:"+string([]byte{b})) {
			err = fmt.Errorf("write %d got %q", b, got)
		}
		errs <- err
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		waitUntil(t, what, cond, func() string { return fmt.Sprintf("%d calls, %d taken", calls.Load(), f.taken.Load()) })
	}
	errs := make(chan error, 32)
	// Two lone writes go at once, one call each.
	for i := range softForwardInflight {
		go forward(byte(i), false, errs)
		waitFor("a lone write's call", func() bool { return calls.Load() == int64(i+1) })
	}
	// Ten more are taken off the queue but held: no third call.
	const held = 10
	for i := range held {
		go forward(byte(10+i), false, errs)
	}
	waitFor("the held writes to be taken", func() bool { return f.taken.Load() == softForwardInflight+held })
	if n := calls.Load(); n != softForwardInflight {
		t.Fatalf("%d calls with %d out: a write was not held", n, softForwardInflight)
	}
	// A revocation joins the held writes and takes them out at once.
	go forward(99, true, errs)
	waitFor("the revocation's call", func() bool { return calls.Load() == softForwardInflight+1 })
	close(release)
	for range softForwardInflight + held + 1 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := calls.Load(); n != softForwardInflight+1 {
		t.Errorf("%d calls, want %d: the held writes did not share the revocation's call", n, softForwardInflight+1)
	}
}

// waitUntil polls cond (a fake's counters) until it holds, failing the test
// after 30 s with state's description.
func waitUntil(t *testing.T, what string, cond func() bool, state func() string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%s)", what, state())
		}
		time.Sleep(time.Millisecond) // polling the fake's counters, bounded by the deadline
	}
}

// TestEncodeForwarded: each forwarded command is the caller's command with
// Forwarded set, unknown bytes included, and the caller's command is left
// as it was (a later attempt may submit it locally).
func TestEncodeForwarded(t *testing.T) {
	issue := &fsmpb.Command{Header: &fsmpb.Header{RequestId: "r1", MinFsmVersion: 2}, Payload: &fsmpb.Command_IssueLease{IssueLease: &fsmpb.IssueLease{
		Lease: &fsmpb.Lease{Id: "l_1", Identity: "ci/a"}, TtlNanos: 5, ConsumeSecretAccessor: "acc",
	}}}
	newer := &fsmpb.Command{Header: &fsmpb.Header{RequestId: "r2", Ignorable: true}}
	newer.ProtoReflect().SetUnknown(protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), "from a newer binary"))
	cmds := []*fsmpb.Command{issue, newer}
	before := make([]*fsmpb.Command, len(cmds))
	for i, c := range cmds {
		before[i] = proto.Clone(c).(*fsmpb.Command)
	}
	out, err := encodeForwarded(cmds)
	if err != nil || len(out) != len(cmds) {
		t.Fatalf("encodeForwarded: %d, %v", len(out), err)
	}
	for i, b := range out {
		got := &fsmpb.Command{}
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		if !got.GetHeader().GetForwarded() {
			t.Errorf("command %d not marked forwarded", i)
		}
		want := proto.Clone(before[i]).(*fsmpb.Command)
		want.Header.Forwarded = true
		if !proto.Equal(got, want) {
			t.Errorf("command %d: got %v, want %v", i, got, want)
		}
		if !proto.Equal(cmds[i], before[i]) {
			t.Errorf("command %d: the caller's command changed: %v", i, cmds[i])
		}
	}
}
