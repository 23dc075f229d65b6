package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// TestCheckLeaseReasons: each way a lease stops being usable, checked at
// read time. The fixture holds l1 (1m, ci/a via role a), child l2 and
// grandchild l3 under it, and l9 of another identity (ci/b via role b),
// which cannot delegate to ci/a.
func TestCheckLeaseReasons(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		after func(h *harness)
		at    time.Duration // read time after t0
		id    string
		want  string
	}{
		{name: "valid", id: "l1"},
		{name: "valid grandchild", id: "l3"},
		{name: "unknown", id: "nope", want: ReasonUnknownLease},
		{name: "expired by time", at: time.Minute, id: "l1", want: ReasonExpired},
		{name: "valid a nanosecond before expiry", at: time.Minute - 1, id: "l1"},
		{name: "revoked", after: func(h *harness) { h.ok(revokeLeaseCmd("l1")) }, id: "l1", want: ReasonRevoked},
		{name: "revoked wins over expired", after: func(h *harness) { h.ok(revokeLeaseCmd("l1")) }, at: time.Hour, id: "l1", want: ReasonRevoked},
		{name: "identity revoked (epoch bump)", after: func(h *harness) { h.ok(revokeIdentityCmd("ci/a")) }, id: "l1", want: ReasonIdentityRevoked},
		{name: "identity disabled", after: func(h *harness) {
			h.ok(withIdentity(identityCmd("ci/a", "prod"), func(p *fsmpb.PutIdentity) { p.Identity.Status = fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED }))
		}, id: "l1", want: ReasonIdentityDisabled},
		{name: "identity deleted", after: func(h *harness) { h.ok(deleteIdentityCmd("ci/a")) }, id: "l1", want: ReasonIdentityDeleted},
		{name: "role deleted", after: func(h *harness) { h.ok(deleteRoleCmd("a")) }, id: "l1", want: ReasonRoleDeleted},
		{name: "role revoked (rebound, epoch bump)", after: func(h *harness) { h.ok(roleCmd("a", "ci/b", "prod")) }, id: "l1", want: ReasonRoleRevoked},
		{name: "parent revoked", after: func(h *harness) { h.ok(revokeLeaseCmd("l1")) }, id: "l2", want: ReasonParentInvalid},
		{name: "grandparent revoked", after: func(h *harness) { h.ok(revokeLeaseCmd("l1")) }, id: "l3", want: ReasonParentInvalid},
		{name: "parent reaped", after: func(h *harness) {
			h.now = t0.Add(time.Minute + time.Nanosecond)
			h.ok(reapCmd(h.now, 1)) // all expire together; (expiry, id) order reaps l1
		}, id: "l2", want: ReasonParentInvalid},
		{name: "child revoked leaves the parent valid", after: func(h *harness) { h.ok(revokeLeaseCmd("l2")) }, id: "l1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := base(t)
			h.ok(identityCmd("ci/b", "prod"))
			h.ok(roleCmd("b", "ci/b", "prod"))
			h.ok(issueCmd(lease{id: "l1"}))
			h.ok(issueCmd(lease{id: "l2", parent: "l1"}))
			h.ok(issueCmd(lease{id: "l3", parent: "l2"}))
			h.ok(issueCmd(lease{id: "l9", identity: "ci/b", role: "b"}))
			// A child belongs to its parent's identity and role.
			if c := h.code(issueCmd(lease{id: "l10", parent: "l9"})); c != codeDenied {
				t.Fatalf("delegating from ci/b to ci/a: %v", c)
			}
			if tc.after != nil {
				tc.after(h)
			}
			l, got := h.f.View().CheckLease(tc.id, t0.Add(tc.at))
			if got != tc.want {
				t.Fatalf("reason %q, want %q", got, tc.want)
			}
			if (l == nil) != (tc.want == ReasonUnknownLease) {
				t.Fatalf("lease %v with reason %q", l, got)
			}
		})
	}
}

func TestLeaseChainDepth(t *testing.T) {
	t.Parallel()
	h := base(t)
	h.ok(issueCmd(lease{id: "l0"}))
	for i := 1; i <= MaxLeaseAncestors; i++ {
		h.ok(issueCmd(lease{id: fmt.Sprint("l", i), parent: fmt.Sprint("l", i-1)}))
	}
	deepest := fmt.Sprint("l", MaxLeaseAncestors)
	if r := h.check(deepest); r != "" {
		t.Fatalf("a lease with %d ancestors: %q", MaxLeaseAncestors, r)
	}
	r := h.apply(issueCmd(lease{id: "too-deep", parent: deepest}))[0]
	if r.GetCode() != codePrecondition {
		t.Fatalf("a lease with %d ancestors was issued: %v", MaxLeaseAncestors+1, r.GetCode())
	}
	h.ok(revokeLeaseCmd("l0"))
	if r := h.check(deepest); r != ReasonParentInvalid {
		t.Fatalf("root revoked, deepest: %q", r)
	}
}

func TestNextExpiry(t *testing.T) {
	t.Parallel()
	h := base(t)
	if _, ok := h.f.View().NextExpiry(); ok {
		t.Fatal("next expiry without leases")
	}
	h.ok(issueCmd(lease{id: "l1", ttl: 5 * time.Minute}))
	h.ok(issueCmd(lease{id: "l2", ttl: 2 * time.Minute}))
	if next, ok := h.f.View().NextExpiry(); !ok || !next.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("next expiry %v %v", next, ok)
	}
}

func TestReapIsBoundedAndOldestFirst(t *testing.T) {
	t.Parallel()
	h := base(t)
	for i := range 10 {
		h.ok(issueCmd(lease{id: fmt.Sprintf("l%02d", i), ttl: time.Duration(i+1) * time.Second}))
	}
	h.now = t0.Add(time.Hour)
	if r := h.ok(reapCmd(t0.Add(5*time.Second), 3)); r.GetCount() != 3 {
		t.Fatalf("reaped %d, want the limit 3", r.GetCount())
	}
	if r := h.ok(reapCmd(t0.Add(5*time.Second), 0)); r.GetCount() != 1 { // l03 expired at 4s
		t.Fatalf("reaped %d", r.GetCount())
	}
	left := h.f.View().Leases("", 0)
	if len(left) != 6 || left[0].GetId() != "l04" {
		t.Fatalf("left %v", left)
	}
}

func TestViewIsAPointInTime(t *testing.T) {
	t.Parallel()
	h := base(t)
	v := h.f.View()
	h.ok(identityCmd("ci/b", "prod"))
	if _, ok := v.Identity("ci/b"); ok || v.Index() != h.idx-1 {
		t.Fatalf("old view changed (index %d)", v.Index())
	}
	if v2 := h.f.View(); v2.Index() != h.idx {
		t.Fatalf("new view index %d", v2.Index())
	} else if _, ok := v2.Identity("ci/b"); !ok {
		t.Fatal("new view misses ci/b")
	}
	ids := h.f.View().Identities()
	if len(ids) != 2 || ids[0].GetId() != "ci/a" || ids[1].GetId() != "ci/b" {
		t.Fatalf("Identities %v", ids)
	}
}

// TestConcurrentReads lets the race detector watch views, snapshots and
// waiters run against Apply.
func TestConcurrentReads(t *testing.T) {
	t.Parallel()
	h := base(t)
	const entries = 200
	last := h.idx + entries
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				v := h.f.View()
				idx := v.Index()
				for _, l := range v.Leases("ci/a", 0) {
					v.CheckLease(l.GetId(), t0)
				}
				// A view is exact: every lease issued at or before its
				// index is in it, none after.
				if n := len(v.Leases("", 0)); uint64(n) != idx-4 && idx > 4 {
					t.Errorf("view at %d holds %d leases", idx, n)
					return
				}
				if idx >= last {
					return
				}
			}
		})
	}
	wg.Go(func() {
		if err := h.f.WaitApplied(context.Background(), last); err != nil {
			t.Error(err)
		}
		if _, err := h.f.Snapshot().WriteTo(discard{}); err != nil {
			t.Error(err)
		}
	})
	for i := range entries {
		h.ok(issueCmd(lease{id: fmt.Sprint("l", i), ttl: time.Hour}))
	}
	wg.Wait()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestWaitApplied(t *testing.T) {
	t.Parallel()
	h := base(t)
	target := h.idx + 2
	done := make(chan error, 1)
	go func() { done <- h.f.WaitApplied(context.Background(), target) }()
	h.ok(noopCmd())
	select {
	case err := <-done:
		t.Fatalf("returned before index %d was applied: %v", target, err)
	default:
	}
	h.ok(noopCmd())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Already applied: at once.
	if err := h.f.WaitApplied(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	// The context ends the wait.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- h.f.WaitApplied(ctx, h.idx+10) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
}

// TestViewMeta: a published view's meta (looked up once per publish) is the
// record its own transaction holds, before and after Bootstrap and after a
// restore into an empty FSM; an older view keeps the meta of its index.
func TestViewMeta(t *testing.T) {
	t.Parallel()
	lookup := func(v *View) *meta {
		m, _ := v.first(tMeta, "id", metaKey).(*meta)
		return m
	}
	h := newHarness(t)
	before := h.f.View()
	if before.Bootstrapped() || before.HMACKey() != nil || lookup(before) != nil {
		t.Fatal("an empty FSM's view has a meta record")
	}
	h.ok(bootstrapCmd())
	v := h.f.View()
	if !v.Bootstrapped() || v.meta() != lookup(v) || !bytes.Equal(v.HMACKey(), bytes.Repeat([]byte{2}, 32)) || v.ClusterID() != "c1" {
		t.Fatalf("after Bootstrap: bootstrapped=%v cluster=%q", v.Bootstrapped(), v.ClusterID())
	}
	if before.Bootstrapped() {
		t.Fatal("a view taken before Bootstrap sees it")
	}
	s := h.f.Snapshot()
	var buf bytes.Buffer
	if _, err := s.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := newHarness(t)
	if err := r.f.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	rv := r.f.View()
	if !rv.Bootstrapped() || rv.meta() != lookup(rv) || rv.ClusterID() != "c1" {
		t.Fatal("a restored FSM's view lost its meta")
	}
}
