package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// echoForwarder answers every command with "r:"+command; every call waits
// for release, so callers queue up behind the calls in flight. sent counts
// the commands handed to send.
func echoForwarder(t *testing.T, fail error) (*forwarder, *atomic.Int64, chan struct{}) {
	f, calls, _, release := echoForwarderSent(t, fail)
	return f, calls, release
}

func echoForwarderSent(t *testing.T, fail error) (*forwarder, *atomic.Int64, *atomic.Int64, chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var calls, sent atomic.Int64
	release := make(chan struct{})
	send := func(ctx context.Context, _ writv1connect.NodeServiceClient, req *writv1.ForwardRequest) (*writv1.ForwardResponse, error) {
		calls.Add(1)
		sent.Add(int64(len(req.GetCommands())))
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
	return newForwarder(ctx, time.Minute, func(string) writv1connect.NodeServiceClient { return nil }, send), &calls, &sent, release
}

// TestForwarderBatches: callers waiting behind a call in flight share the
// next calls, and each gets exactly its own results, in order.
func TestForwarderBatches(t *testing.T) {
	f, calls, sent, release := echoForwarderSent(t, nil)
	const callers = 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmds := [][]byte{[]byte(fmt.Sprintf("%d-a", i)), []byte(fmt.Sprintf("%d-b", i))}
			got, err := f.forward(context.Background(), "leader:1", cmds)
			if err != nil {
				errs <- err
				return
			}
			if len(got) != 2 || string(got[0]) != "r:"+string(cmds[0]) || string(got[1]) != "r:"+string(cmds[1]) {
				errs <- fmt.Errorf("caller %d got %q", i, got)
			}
		}()
	}
	// Wait until every caller is in a call or queued (one may be held as
	// the loop's carry) while the calls are blocked.
	queued := func() int64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return int64(len(f.queues["leader:1"]))
	}
	deadline := time.Now().Add(30 * time.Second)
	for sent.Load()/2+queued() < callers-1 && time.Now().Before(deadline) {
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
			if _, err := f.forward(context.Background(), "leader:1", [][]byte{[]byte{byte(i)}}); !errors.Is(err, boom) {
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
	got, err := f.forward(context.Background(), "leader:1", big)
	if err != nil || len(got) != len(big) || calls.Load() != 1 {
		t.Fatalf("%d results, %d calls, %v", len(got), calls.Load(), err)
	}
}
