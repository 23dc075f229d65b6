package fsm

import (
	"bytes"
	"encoding/base32"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

const benchLeases = 10000

// randomIDs makes ids shaped like rpc's: a prefix and 16 random bytes in
// base32, from a fixed seed.
type randomIDs struct{ r *rand.ChaCha8 }

func newRandomIDs(seed byte) *randomIDs { return &randomIDs{rand.NewChaCha8([32]byte{seed})} }

func (g *randomIDs) next(prefix string) string {
	var b [16]byte
	_, _ = g.r.Read(b[:])
	return prefix + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

// benchState is the base fixture plus role "big" (no budget) holding
// benchLeases live leases issued in batches of 128, one entry a millisecond,
// with random ids like rpc's (every tenth named seed-NNNNN).
func benchState(b *testing.B) *harness {
	h := base(b)
	h.ok(roleCmd("big", "ci/a", "prod"))
	ids := newRandomIDs(1)
	for i := 0; i < benchLeases; i += 128 {
		h.now = h.now.Add(time.Millisecond)
		var batch []*fsmpb.Command
		for j := i; j < min(i+128, benchLeases); j++ {
			id := fmt.Sprintf("seed-%05d", j)
			if j%10 != 0 {
				id = ids.next("l_")
			}
			c := issueCmd(lease{id: id, role: "big", ttl: time.Hour})
			c.Header.RequestId = ids.next("r_")
			batch = append(batch, c)
		}
		for _, r := range h.apply(batch...) {
			if r.GetCode() != codeOK {
				b.Fatal(r.GetMessage())
			}
		}
	}
	return h
}

// entries makes encoded entries of `per` IssueLease commands each, the way
// the proposer would, outside the timed region.
type entries struct {
	h   *harness
	per int
	ids *randomIDs
	buf [][]byte
	// secret, when set, is the accessor each issuance consumes; skip sets
	// skip_unlimited_use_count.
	secret string
	skip   bool
}

func (e *entries) get(b *testing.B) []byte {
	if len(e.buf) == 0 {
		b.StopTimer()
		for range 256 {
			e.h.now = e.h.now.Add(time.Millisecond)
			cmds := make([]*fsmpb.Command, e.per)
			for j := range cmds {
				cmds[j] = issueCmd(lease{id: e.ids.next("l_"), role: "big", ttl: time.Hour})
				cmds[j].Header.RequestId = e.ids.next("r_")
				cmds[j].GetIssueLease().ConsumeSecretAccessor = e.secret
				cmds[j].GetIssueLease().SkipUnlimitedUseCount = e.skip
			}
			e.buf = append(e.buf, e.h.entry(cmds...))
		}
		b.StartTimer()
	}
	data := e.buf[0]
	e.buf = e.buf[1:]
	return data
}

func benchmarkIssue(b *testing.B, per int) { benchmarkIssueWith(b, per, "", false) }

func benchmarkIssueWith(b *testing.B, per int, secret string, skip bool) {
	h := benchState(b)
	if secret != "" {
		h.ok(secretCmd(secret, "big", 9, 0, 0)) // unlimited uses
	}
	// The state is put back to its 10k leases now and then (untimed), so
	// the numbers do not depend on how many iterations the run chose.
	var snap bytes.Buffer
	if _, err := h.f.Snapshot().WriteTo(&snap); err != nil {
		b.Fatal(err)
	}
	resetEvery := max(1, 8192/per)
	src := &entries{h: h, per: per, ids: newRandomIDs(2), secret: secret, skip: skip}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if n++; n%resetEvery == 0 {
			b.StopTimer()
			if err := h.f.Restore(bytes.NewReader(snap.Bytes())); err != nil {
				b.Fatal(err)
			}
			h.idx = h.f.AppliedIndex()
			b.StartTimer()
		}
		h.idx++
		rs := h.f.Apply(h.idx, src.get(b))
		if len(rs) != per || rs[per-1].GetCode() != codeOK {
			b.Fatalf("%d results, last %v", len(rs), rs[len(rs)-1])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/lease")
}

// BenchmarkApplyIssueLease: one IssueLease per entry (decode, checks,
// insert, dedupe row, commit, publish) with 10k to 18k leases stored.
func BenchmarkApplyIssueLease(b *testing.B) { benchmarkIssue(b, 1) }

// BenchmarkApplyIssueBatch128: a group-committed entry of 128 IssueLease.
func BenchmarkApplyIssueBatch128(b *testing.B) { benchmarkIssue(b, 128) }

// BenchmarkApplyIssueAppRole: entries of 128 AppRole issuances consuming
// one unlimited secret id, counted (FSM version 2 and below) and not
// (skip_unlimited_use_count, version 3).
func BenchmarkApplyIssueAppRole(b *testing.B) {
	b.Run("counted", func(b *testing.B) { benchmarkIssueWith(b, 128, "bench-secret", false) })
	b.Run("uncounted", func(b *testing.B) { benchmarkIssueWith(b, 128, "bench-secret", true) })
}

// BenchmarkViewCheckLease: Authorize's read path, a fresh view per call.
func BenchmarkViewCheckLease(b *testing.B) {
	h := benchState(b)
	h.ok(issueCmd(lease{id: "parent", ttl: time.Hour}))
	h.ok(issueCmd(lease{id: "child", parent: "parent", ttl: time.Hour}))
	for _, id := range []string{"seed-05000", "child"} {
		b.Run(id, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, reason := h.f.View().CheckLease(id, h.now); reason != "" {
					b.Fatal(reason)
				}
			}
		})
	}
}

// BenchmarkViewLoginReads: the meta reads every AppRole login makes on a
// fresh view (Bootstrapped, then the HMAC key).
func BenchmarkViewLoginReads(b *testing.B) {
	h := benchState(b)
	b.ReportAllocs()
	for b.Loop() {
		v := h.f.View()
		if !v.Bootstrapped() || len(v.HMACKey()) == 0 {
			b.Fatal("not bootstrapped")
		}
	}
}
