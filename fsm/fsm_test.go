package fsm

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// log is a helper that applies commands at increasing indexes.
type log struct {
	t   testing.TB
	f   *FSM
	idx uint64
	now time.Time
}

func newLog(t testing.TB) *log { return &log{t: t, f: New(Config{}), now: t0} }

func (l *log) apply(cmds ...*fsmpb.Command) []*fsmpb.Result {
	l.t.Helper()
	l.idx++
	var entry *fsmpb.Command
	if len(cmds) == 1 {
		entry = proto.Clone(cmds[0]).(*fsmpb.Command)
	} else {
		entry = &fsmpb.Command{Payload: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Commands: cmds}}}
	}
	if entry.Header == nil {
		entry.Header = &fsmpb.Header{}
	}
	entry.Header.TimeUnixNano = l.now.UnixNano()
	data, err := Encode(entry)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.f.Apply(l.idx, data)
}

func (l *log) ok(cmd *fsmpb.Command) *fsmpb.Result {
	l.t.Helper()
	r := l.apply(cmd)[0]
	if r.GetCode() != fsmpb.ResultCode_RESULT_CODE_OK {
		l.t.Fatalf("apply %T: %v %s", cmd.GetPayload(), r.GetCode(), r.GetMessage())
	}
	return r
}

var seq atomic.Int64

func rid() *fsmpb.Header { return &fsmpb.Header{RequestId: fmt.Sprintf("req-%d", seq.Add(1))} }

func bootstrap() *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_Bootstrap{Bootstrap: &fsmpb.Bootstrap{
		ClusterId: "c1", AdminTokenSha256: bytes.Repeat([]byte{1}, 32), HmacKey: bytes.Repeat([]byte{2}, 32),
		SigningKey: &fsmpb.SigningKey{Kid: "k1", Ed25519Seed: bytes.Repeat([]byte{3}, 32), CreatedUnixNano: 1},
	}}}
}

func putIdentity(id, env string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_PutIdentity{PutIdentity: &fsmpb.PutIdentity{Identity: &fsmpb.Identity{
		Id: id, Kind: "ci_job", Owner: "team", Environment: env,
	}}}}
}

func putRole(name, ident, env string, maxLive, maxRenew uint32) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_PutRole{PutRole: &fsmpb.PutRole{Role: &fsmpb.Role{
		Name: name, Environment: env, Identity: ident, RoleId: "rid-" + name, AuthMethods: []string{"approle"},
		DefaultTtlNanos: int64(time.Minute), MaxTtlNanos: int64(time.Hour), MaxLiveLeases: maxLive, MaxRenewals: maxRenew,
	}}}}
}

func putPolicy(name string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_PutPolicySet{PutPolicySet: &fsmpb.PutPolicySet{PolicySet: &fsmpb.PolicySet{Name: name, Cedar: "permit(principal, action, resource);"}}}}
}

func issue(id, ident, role string, identEpoch, version uint64, ttl time.Duration, parent, secret string) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_IssueLease{IssueLease: &fsmpb.IssueLease{
		Lease: &fsmpb.Lease{Id: id, Identity: ident, IdentityEpoch: identEpoch, Role: role, RoleEpoch: 1, PolicySet: "prod", PolicyVersion: version, Parent: parent,
			Scope: &fsmpb.Scope{Actions: []string{"deploy"}}},
		TtlNanos: int64(ttl), ConsumeSecretAccessor: secret,
	}}}
}

func base(t testing.TB) *log {
	l := newLog(t)
	l.ok(bootstrap())
	l.ok(putIdentity("ci/a", "prod"))
	l.ok(putRole("a", "ci/a", "prod", 3, 1))
	l.ok(putPolicy("prod"))
	return l
}

func TestApplyResults(t *testing.T) {
	t.Parallel()
	code := func(c fsmpb.ResultCode) fsmpb.ResultCode { return c }
	cases := []struct {
		name string
		cmd  func() *fsmpb.Command
		want fsmpb.ResultCode
	}{
		{"bootstrap twice", bootstrap, codePrecondition},
		{"identity bad kind", func() *fsmpb.Command {
			c := putIdentity("x", "prod")
			c.GetPutIdentity().Identity.Kind = "human"
			return c
		}, codeInvalid},
		{"identity no owner", func() *fsmpb.Command { c := putIdentity("x", "prod"); c.GetPutIdentity().Identity.Owner = ""; return c }, codeInvalid},
		{"identity create_only exists", func() *fsmpb.Command {
			c := putIdentity("ci/a", "prod")
			c.GetPutIdentity().CreateOnly = true
			return c
		}, codeExists},
		{"identity stale version", func() *fsmpb.Command {
			c := putIdentity("ci/a", "prod")
			c.GetPutIdentity().ExpectVersion = 7
			return c
		}, codeAborted},
		{"role other environment", func() *fsmpb.Command { return putRole("b", "ci/a", "dev", 0, 0) }, codePrecondition},
		{"role unknown identity", func() *fsmpb.Command { return putRole("b", "ghost", "prod", 0, 0) }, codePrecondition},
		{"role duplicate role id", func() *fsmpb.Command {
			c := putRole("b", "ci/a", "prod", 0, 0)
			c.GetPutRole().Role.RoleId = "rid-a"
			return c
		}, codeExists},
		{"issue ok", func() *fsmpb.Command { return issue("l1", "ci/a", "a", 1, 1, time.Minute, "", "") }, code(fsmpb.ResultCode_RESULT_CODE_OK)},
		{"issue stale epoch", func() *fsmpb.Command { return issue("l1", "ci/a", "a", 2, 1, time.Minute, "", "") }, codePrecondition},
		{"issue policy changed", func() *fsmpb.Command { return issue("l1", "ci/a", "a", 1, 2, time.Minute, "", "") }, codePolicy},
		{"issue ttl over max", func() *fsmpb.Command { return issue("l1", "ci/a", "a", 1, 1, 2*time.Hour, "", "") }, codeInvalid},
		{"issue unknown parent", func() *fsmpb.Command { return issue("l1", "ci/a", "a", 1, 1, time.Minute, "nope", "") }, codePrecondition},
		{"issue unknown secret", func() *fsmpb.Command { return issue("l1", "ci/a", "a", 1, 1, time.Minute, "", "nope") }, codeDenied},
		{"nested batch", func() *fsmpb.Command {
			return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{}}}
		}, codeInvalid},
		{"revoke unknown lease", func() *fsmpb.Command {
			return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: "nope"}}}
		}, codeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := base(t)
			before := l.f.StateHash()
			// Wrap in a batch of one plus a noop so nested batch is really nested.
			r := l.apply(tc.cmd(), &fsmpb.Command{Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}})[0]
			if r.GetCode() != tc.want {
				t.Fatalf("code %v (%s), want %v", r.GetCode(), r.GetMessage(), tc.want)
			}
			if r.GetCode() != fsmpb.ResultCode_RESULT_CODE_OK && l.f.StateHash() != before {
				t.Fatalf("a rejected command changed the state")
			}
		})
	}
}

func TestLeaseLifecycle(t *testing.T) {
	t.Parallel()
	l := base(t)
	r := l.ok(issue("l1", "ci/a", "a", 1, 1, time.Minute, "", ""))
	if got := r.GetLease(); got.GetOwner() != "team" || got.GetEnvironment() != "prod" || got.GetExpiresUnixNano() != t0.Add(time.Minute).UnixNano() {
		t.Fatalf("stored lease %v", got)
	}
	l.ok(issue("child", "ci/a", "a", 1, 1, 30*time.Minute, "l1", ""))
	if c, _ := l.f.View().Lease("child"); c.GetExpiresUnixNano() != t0.Add(time.Minute).UnixNano() {
		t.Fatalf("child expiry not capped at the parent's")
	}
	v := l.f.View()
	for _, id := range []string{"l1", "child"} {
		if _, reason := v.CheckLease(id, t0); reason != "" {
			t.Fatalf("%s invalid: %s", id, reason)
		}
	}
	// Budget: max 3 live leases for role a.
	l.ok(issue("l3", "ci/a", "a", 1, 1, time.Minute, "", ""))
	if r := l.apply(issue("l4", "ci/a", "a", 1, 1, time.Minute, "", ""))[0]; r.GetCode() != codeExhausted {
		t.Fatalf("budget: %v", r.GetCode())
	}
	// Renew: one renewal allowed.
	renew := func() *fsmpb.Result {
		return l.apply(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RenewLease{RenewLease: &fsmpb.RenewLease{LeaseId: "l3", TtlNanos: int64(time.Hour), PolicySet: "prod", PolicyVersion: 1}}})[0]
	}
	l.now = t0.Add(30 * time.Second)
	if r := renew(); r.GetCode() != fsmpb.ResultCode_RESULT_CODE_OK || r.GetLease().GetExpiresUnixNano() != t0.Add(time.Hour).UnixNano() {
		t.Fatalf("renew: %v %v", r.GetCode(), r.GetLease())
	}
	if r := renew(); r.GetCode() != codeExhausted {
		t.Fatalf("second renew: %v", r.GetCode())
	}
	// Revoke the parent: the child is invalid through its ancestry.
	l.ok(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: "l1"}}})
	v = l.f.View()
	if _, reason := v.CheckLease("l1", l.now); reason != ReasonRevoked {
		t.Fatalf("l1: %q", reason)
	}
	if _, reason := v.CheckLease("child", l.now); reason != ReasonParentInvalid {
		t.Fatalf("child: %q", reason)
	}
	// Revoke the identity: one entry, every lease invalid.
	l.ok(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeIdentity{RevokeIdentity: &fsmpb.RevokeIdentity{IdentityId: "ci/a"}}})
	if _, reason := l.f.View().CheckLease("l3", l.now); reason != ReasonIdentityRevoked {
		t.Fatalf("l3 after identity revoke: %q", reason)
	}
	// Expiry by clock, then reaping.
	if _, reason := l.f.View().CheckLease("l1", t0.Add(2*time.Hour)); reason != ReasonRevoked {
		t.Fatalf("revoked wins over expired: %q", reason)
	}
	l.now = t0.Add(2 * time.Minute)
	r = l.ok(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_ReapExpired{ReapExpired: &fsmpb.ReapExpired{BeforeUnixNano: l.now.UnixNano()}}})
	if r.GetCount() != 2 { // l1 and child expired at t0+1m; l3 was renewed to t0+1h
		t.Fatalf("reaped %d", r.GetCount())
	}
	if _, reason := l.f.View().CheckLease("l1", l.now); reason != ReasonUnknownLease {
		t.Fatalf("reaped lease: %q", reason)
	}
}

func TestCheckLeaseReasons(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		after func(l *log)
		at    time.Duration
		want  string
	}{
		{"valid", func(*log) {}, 0, ""},
		{"expired", func(*log) {}, time.Minute, ReasonExpired},
		{"identity disabled", func(l *log) {
			c := putIdentity("ci/a", "prod")
			c.GetPutIdentity().Identity.Status = fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED
			l.ok(c)
		}, 0, ReasonIdentityDisabled},
		{"identity deleted", func(l *log) {
			l.ok(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_DeleteIdentity{DeleteIdentity: &fsmpb.DeleteIdentity{Id: "ci/a"}}})
		}, 0, ReasonIdentityDeleted},
		{"role deleted", func(l *log) {
			l.ok(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_DeleteRole{DeleteRole: &fsmpb.DeleteRole{Name: "a"}}})
		}, 0, ReasonRoleDeleted},
		{"unknown", func(*log) {}, 0, ReasonUnknownLease},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := base(t)
			l.ok(issue("l1", "ci/a", "a", 1, 1, time.Minute, "", ""))
			tc.after(l)
			id := "l1"
			if tc.want == ReasonUnknownLease {
				id = "l2"
			}
			if _, got := l.f.View().CheckLease(id, t0.Add(tc.at)); got != tc.want {
				t.Fatalf("reason %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSecretIDUseCount(t *testing.T) {
	t.Parallel()
	l := base(t)
	l.ok(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_CreateSecretId{CreateSecretId: &fsmpb.CreateSecretID{
		SecretId: &fsmpb.SecretID{Accessor: "acc", Role: "a", SecretHmac: bytes.Repeat([]byte{9}, 32), NumUses: 1},
	}}})
	if r := l.apply(issue("l1", "ci/a", "a", 1, 1, time.Minute, "", "acc"))[0]; r.GetCode() != fsmpb.ResultCode_RESULT_CODE_OK {
		t.Fatalf("first use: %v", r.GetCode())
	}
	if r := l.apply(issue("l2", "ci/a", "a", 1, 1, time.Minute, "", "acc"))[0]; r.GetCode() != codeDenied {
		t.Fatalf("second use: %v", r.GetCode())
	}
	if s, _ := l.f.View().SecretIDByHMAC(bytes.Repeat([]byte{9}, 32)); s.GetUses() != 1 {
		t.Fatalf("uses %d", s.GetUses())
	}
}

func TestDedupe(t *testing.T) {
	t.Parallel()
	l := base(t)
	cmd := issue("l1", "ci/a", "a", 1, 1, time.Minute, "", "")
	first := l.apply(cmd)[0]
	hash := l.f.StateHash()
	again := l.apply(cmd)[0]
	if diff := cmp.Diff(first, again, protocmp.Transform()); diff != "" {
		t.Fatalf("replayed request differs (-first +again):\n%s", diff)
	}
	if l.f.StateHash() != hash {
		t.Fatalf("replay changed the state")
	}
	// Past the window the id is forgotten: the same command now conflicts on the lease id.
	l.now = t0.Add(dedupeWindow + time.Minute)
	l.ok(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}})
	if r := l.apply(cmd)[0]; r.GetCode() != codeExists {
		t.Fatalf("after the window: %v", r.GetCode())
	}
}

// randomLog builds a random but valid-shaped command sequence.
func randomLog(r *rand.Rand, n int) []*fsmpb.Command {
	cmds := []*fsmpb.Command{bootstrap(), putIdentity("ci/a", "prod"), putIdentity("ci/b", "prod"), putRole("a", "ci/a", "prod", 50, 2), putRole("b", "ci/b", "prod", 0, 0), putPolicy("prod")}
	for i := 0; i < n; i++ {
		lease := fmt.Sprintf("l%d", r.IntN(n))
		switch r.IntN(7) {
		case 0, 1, 2:
			ident, role := "ci/a", "a"
			if r.IntN(2) == 0 {
				ident, role = "ci/b", "b"
			}
			parent := ""
			if r.IntN(4) == 0 {
				parent = fmt.Sprintf("l%d", r.IntN(n))
			}
			cmds = append(cmds, issue(fmt.Sprintf("l%d", i), ident, role, uint64(1+r.IntN(2)), 1, time.Duration(1+r.IntN(60))*time.Second, parent, ""))
		case 3:
			cmds = append(cmds, &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: lease}}})
		case 4:
			cmds = append(cmds, &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RenewLease{RenewLease: &fsmpb.RenewLease{LeaseId: lease, TtlNanos: int64(time.Minute), PolicySet: "prod", PolicyVersion: 1}}})
		case 5:
			cmds = append(cmds, &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_RevokeIdentity{RevokeIdentity: &fsmpb.RevokeIdentity{IdentityId: "ci/b"}}})
		case 6:
			cmds = append(cmds, &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_ReapExpired{ReapExpired: &fsmpb.ReapExpired{BeforeUnixNano: t0.Add(time.Duration(i) * time.Second).UnixNano()}}})
		}
	}
	return cmds
}

// TestDeterminismAndSnapshot: two FSMs fed the same log agree; a snapshot
// restored into a third agrees, and keeps agreeing as the log goes on.
func TestDeterminismAndSnapshot(t *testing.T) {
	t.Parallel()
	cmds := randomLog(rand.New(rand.NewPCG(1, 2)), 400)
	a, b := newLog(t), newLog(t)
	half := len(cmds) / 2
	var snap bytes.Buffer
	noop := &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}}
	for i, c := range cmds {
		a.now = t0.Add(time.Duration(i) * 500 * time.Millisecond)
		b.now = a.now
		ra, rb := a.apply(c), b.apply(c)
		if diff := cmp.Diff(ra, rb, protocmp.Transform()); diff != "" {
			t.Fatalf("entry %d results differ:\n%s", i, diff)
		}
		if i == half {
			s := a.f.Snapshot()
			// Applies after the snapshot was taken must not leak into it.
			a.apply(noop)
			b.apply(noop)
			if _, err := s.WriteTo(&snap); err != nil {
				t.Fatal(err)
			}
		}
	}
	if a.f.StateHash() != b.f.StateHash() {
		t.Fatal("replicas diverged")
	}
	// Restore the mid-log snapshot and replay the rest.
	c := newLog(t)
	if err := c.f.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if c.f.AppliedIndex() != uint64(half+1) {
		t.Fatalf("restored index %d", c.f.AppliedIndex())
	}
	c.idx = c.f.AppliedIndex()
	c.now = t0.Add(time.Duration(half) * 500 * time.Millisecond)
	c.apply(noop)
	for i := half + 1; i < len(cmds); i++ {
		c.now = t0.Add(time.Duration(i) * 500 * time.Millisecond)
		c.apply(cmds[i])
	}
	if c.f.StateHash() != a.f.StateHash() {
		t.Fatal("restored replica diverged")
	}
	if diff := cmp.Diff(a.f.View().Leases("", 0), c.f.View().Leases("", 0), protocmp.Transform()); diff != "" {
		t.Fatalf("leases differ:\n%s", diff)
	}
}

func TestRestoreCorruptKeepsState(t *testing.T) {
	t.Parallel()
	l := base(t)
	l.ok(issue("l1", "ci/a", "a", 1, 1, time.Minute, "", ""))
	var snap bytes.Buffer
	if _, err := l.f.Snapshot().WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	before := l.f.StateHash()
	for _, cut := range []int{1, snap.Len() / 2, snap.Len() - 1} {
		if err := l.f.Restore(bytes.NewReader(snap.Bytes()[:cut])); err == nil {
			t.Fatalf("restore of %d/%d bytes succeeded", cut, snap.Len())
		}
		if l.f.StateHash() != before {
			t.Fatalf("failed restore changed state")
		}
	}
}

func TestWaitApplied(t *testing.T) {
	t.Parallel()
	l := base(t)
	done := make(chan error, 1)
	target := l.idx + 1
	go func() { done <- l.f.WaitApplied(context.Background(), target) }()
	l.ok(&fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.f.WaitApplied(ctx, l.idx+10); err == nil {
		t.Fatal("WaitApplied ignored its context")
	}
}

func TestHalts(t *testing.T) {
	t.Parallel()
	cases := map[string]*fsmpb.Command{
		"unknown payload":   {Header: &fsmpb.Header{}},
		"newer fsm version": {Header: &fsmpb.Header{MinFsmVersion: Version + 1}, Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}}},
	}
	for name, cmd := range cases {
		t.Run(name, func(t *testing.T) {
			l := newLog(t)
			defer func() {
				if recover() == nil {
					t.Fatal("Apply did not halt")
				}
			}()
			data, _ := Encode(cmd)
			l.f.Apply(1, data)
		})
	}
	// An ignorable unknown payload is skipped.
	l := newLog(t)
	data, _ := Encode(&fsmpb.Command{Header: &fsmpb.Header{Ignorable: true}})
	if r := l.f.Apply(1, data); r[0].GetCode() != fsmpb.ResultCode_RESULT_CODE_OK {
		t.Fatalf("ignorable: %v", r[0].GetCode())
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range []*fsmpb.Command{bootstrap(), putIdentity("x", "prod"), issue("l", "x", "r", 1, 1, time.Second, "", "")} {
		b, _ := Encode(c)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := Decode(b)
		if err != nil {
			return
		}
		out, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(out); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func benchLog(b *testing.B, leases int) *log {
	l := base(b)
	l.ok(putRole("big", "ci/a", "prod", 0, 0))
	for i := 0; i < leases; i += 128 {
		var batch []*fsmpb.Command
		for j := i; j < i+128 && j < leases; j++ {
			batch = append(batch, issue(fmt.Sprintf("seed-%d", j), "ci/a", "big", 1, 1, time.Hour, "", ""))
		}
		l.apply(batch...)
	}
	return l
}

func BenchmarkApplyIssueLease(b *testing.B) {
	l := benchLog(b, 10000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		r := l.apply(issue(fmt.Sprintf("b-%d", i), "ci/a", "big", 1, 1, time.Hour, "", ""))
		if r[0].GetCode() != fsmpb.ResultCode_RESULT_CODE_OK {
			b.Fatal(r[0].GetMessage())
		}
	}
}

func BenchmarkApplyIssueBatch128(b *testing.B) {
	l := benchLog(b, 10000)
	b.ReportAllocs()
	i := 0
	batch := make([]*fsmpb.Command, 128)
	for b.Loop() {
		for j := range batch {
			i++
			batch[j] = issue(fmt.Sprintf("b-%d", i), "ci/a", "big", 1, 1, time.Hour, "", "")
		}
		if r := l.apply(batch...); r[127].GetCode() != fsmpb.ResultCode_RESULT_CODE_OK {
			b.Fatal(r[127].GetMessage())
		}
	}
}

func BenchmarkViewCheckLease(b *testing.B) {
	l := benchLog(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, reason := l.f.View().CheckLease("seed-5000", t0); reason != "" {
			b.Fatal(reason)
		}
	}
}
