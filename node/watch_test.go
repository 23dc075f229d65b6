package node_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// gateway is what an API gateway does with WatchRevocations: hold the
// stream, remember every revocation and the index it has seen everything up
// to, and resume from there after a disconnect (on any node).
type gateway struct {
	mu     sync.Mutex
	events []string // "index kind target", in arrival order
	upTo   uint64
	resets int
}

func (g *gateway) follow(ctx context.Context, c *nodetest.Cluster, i int) (done chan error) {
	g.mu.Lock()
	after := g.upTo
	g.mu.Unlock()
	done = make(chan error, 1)
	stream, err := c.Lease(i).WatchRevocations(ctx, connect.NewRequest(&writv1.WatchRevocationsRequest{AfterIndex: after}))
	if err != nil {
		done <- err
		return done
	}
	go func() {
		defer stream.Close()
		for stream.Receive() {
			m := stream.Msg()
			g.mu.Lock()
			if m.GetResetCache() {
				g.resets++
			}
			for _, ev := range m.GetEvents() {
				g.events = append(g.events, fmt.Sprintf("%d %s %s", ev.GetIndex(), ev.GetKind(), ev.GetTarget()))
			}
			g.upTo = m.GetUpToIndex()
			g.mu.Unlock()
		}
		done <- stream.Err()
	}()
	return done
}

// at is the index the gateway has seen up to (for messages; it runs
// concurrently with follow's goroutine).
func (g *gateway) at() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.upTo
}

func (g *gateway) seen(index uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.upTo >= index
}

// history is what the node itself holds: the reference the gateway must match.
func history(c *nodetest.Cluster, i int, after uint64) []string {
	var out []string
	for _, ev := range c.Members[i].Node.FSM().Revocations(after, 0).Events {
		out = append(out, fmt.Sprintf("%d %s %s", ev.Index, ev.Kind, ev.Target))
	}
	return out
}

// TestWatchRevocationsResume: a gateway follows n2, disconnects, misses four
// revocations, resumes on n3 from the last index it saw and ends with every
// revocation exactly once, in order. Then a snapshot restore makes the
// nodes forget the history before it: a gateway resuming from before the
// restore is told to reset its cache.
func TestWatchRevocationsResume(t *testing.T) {
	c := nodetest.New(t, 3, nodetest.Options{})
	proof := setup(t, c)
	ctx := context.Background()
	var creds []*writv1.AuthorizeAndIssueResponse
	for range 6 {
		resp, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
		if err != nil {
			t.Fatal(err)
		}
		creds = append(creds, resp.Msg)
	}
	revoke := func(i int, req *writv1.RevokeRequest) uint64 {
		t.Helper()
		resp, err := c.Authz(i, true).Revoke(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg.GetIndex()
	}
	lease := func(k int) *writv1.RevokeRequest {
		return &writv1.RevokeRequest{Target: &writv1.RevokeRequest_LeaseId{LeaseId: creds[k].GetLease().GetId()}}
	}

	g := &gateway{}
	sctx, disconnect := context.WithCancel(ctx)
	done := g.follow(sctx, c, 1)
	var last uint64
	for k := range 2 {
		last = revoke(k%3, lease(k))
	}
	nodetest.Eventually(t, 10*time.Second, "gateway sees the first revocations", func() error {
		if !g.seen(last) {
			return fmt.Errorf("gateway at %d, want %d", g.at(), last)
		}
		return nil
	})
	disconnect()
	<-done

	// Missed while disconnected.
	revoke(0, lease(2))
	revoke(1, &writv1.RevokeRequest{Target: &writv1.RevokeRequest_Subtree{Subtree: creds[3].GetLease().GetId()}})
	if _, err := c.Lease(2).Complete(ctx, connect.NewRequest(&writv1.CompleteRequest{Credential: creds[4].GetCredential()})); err != nil {
		t.Fatal(err)
	}
	revoke(2, &writv1.RevokeRequest{Target: &writv1.RevokeRequest_Owner{Owner: "team-platform"}})

	sctx, disconnect = context.WithCancel(ctx)
	defer disconnect()
	done = g.follow(sctx, c, 2) // another node
	last = revoke(0, &writv1.RevokeRequest{Target: &writv1.RevokeRequest_Role{Role: "deploy-api"}})
	nodetest.Eventually(t, 10*time.Second, "gateway catches up", func() error {
		if !g.seen(last) {
			return fmt.Errorf("gateway at %d, want %d", g.at(), last)
		}
		return nil
	})
	disconnect()
	<-done
	g.mu.Lock()
	got, resets := slices.Clone(g.events), g.resets
	g.mu.Unlock()
	want := history(c, 0, 0)
	if !slices.Equal(got, want) || resets != 0 {
		t.Fatalf("gateway saw (%d resets)\n%q\nnode holds\n%q", resets, got, want)
	}
	kinds := map[string]bool{}
	for _, ev := range c.Members[0].Node.FSM().Revocations(0, 0).Events {
		kinds[ev.Kind] = true
	}
	for _, k := range []string{fsm.RevocationLease, fsm.RevocationSubtree, fsm.RevocationCompleted, fsm.RevocationOwner, fsm.RevocationRole} {
		if !kinds[k] {
			t.Errorf("no %s revocation in %q", k, want)
		}
	}

	// A restore replaces the state: revocations before it are no longer
	// known, and a gateway resuming from before it must drop its cache.
	leader := c.Members[c.Leader()].Node
	var snap bytes.Buffer
	if err := leader.SnapshotSave(ctx, &snap); err != nil {
		t.Fatal(err)
	}
	restoredAt, err := leader.SnapshotRestore(ctx, &snap)
	if err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 10*time.Second, "n2 restored", func() error {
		if c.Members[1].Node.FSM().AppliedIndex() < restoredAt {
			return fmt.Errorf("n2 at %d", c.Members[1].Node.FSM().AppliedIndex())
		}
		return nil
	})
	stale := &gateway{upTo: last}
	sctx, disconnect = context.WithCancel(ctx)
	defer disconnect()
	done = stale.follow(sctx, c, 1)
	nodetest.Eventually(t, 10*time.Second, "a reset after the restore", func() error {
		stale.mu.Lock()
		defer stale.mu.Unlock()
		if stale.resets != 1 {
			return fmt.Errorf("%d resets", stale.resets)
		}
		return nil
	})
	disconnect()
	<-done
}
