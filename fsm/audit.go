package fsm

import (
	"encoding/hex"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// AuditCheckpointsPerStream bounds the checkpoints kept per (node, stream):
// the newest covers everything before it through the hash chain, the few
// older ones let a rotated-away file be checked on its own.
const AuditCheckpointsPerStream = 8

// checkpointAudit appends a node's audit chain heads to its record, stamped
// with this entry's index and time, keeping the newest few per stream.
func (a *applier) checkpointAudit(p *fsmpb.CheckpointAudit) *fsmpb.Result {
	raw := a.first(tNode, "id", p.GetNodeId())
	if raw == nil {
		return fail(codeNotFound, "node %q is not registered", p.GetNodeId())
	}
	if len(p.GetHeads()) == 0 || len(p.GetHeads()) > 16 {
		return fail(codeInvalid, "a checkpoint carries 1..16 heads, not %d", len(p.GetHeads()))
	}
	for _, h := range p.GetHeads() {
		if !validID(h.GetStream()) || len(h.GetStream()) > 32 {
			return fail(codeInvalid, "stream %q is not a stream name", h.GetStream())
		}
		if b, err := hex.DecodeString(h.GetHash()); err != nil || len(b) != 32 || h.GetSeq() == 0 {
			return fail(codeInvalid, "stream %s: want seq > 0 and a hex SHA-256 hash", h.GetStream())
		}
	}
	n := proto.Clone(raw.(*fsmpb.Node)).(*fsmpb.Node)
	for _, h := range p.GetHeads() {
		n.AuditCheckpoints = append(n.AuditCheckpoints, &fsmpb.AuditCheckpoint{
			Stream: h.GetStream(), Seq: h.GetSeq(), Hash: h.GetHash(), TimeUnixNano: a.now, Index: a.index,
		})
	}
	n.AuditCheckpoints = trimCheckpoints(n.AuditCheckpoints)
	a.put(tNode, n)
	return ok()
}

// trimCheckpoints keeps the newest AuditCheckpointsPerStream of each
// stream, in their order (deterministic: no map iteration decides order).
func trimCheckpoints(cps []*fsmpb.AuditCheckpoint) []*fsmpb.AuditCheckpoint {
	count := map[string]int{}
	keep := make([]bool, len(cps))
	for i := len(cps) - 1; i >= 0; i-- {
		s := cps[i].GetStream()
		if count[s] < AuditCheckpointsPerStream {
			keep[i] = true
			count[s]++
		}
	}
	out := cps[:0]
	for i, c := range cps {
		if keep[i] {
			out = append(out, c)
		}
	}
	return out
}

// LiveLeases counts leases not expired at now (revoked ones included until
// reaped): the live-lease gauge, read at scrape time. It walks the lease
// store's expiry index up to now and subtracts, so it costs one step per
// expired-but-unreaped lease (few: the reaper removes them), not per live one.
func (v *View) LiveLeases(now time.Time) int {
	at := now.UnixNano()
	expired := 0
	v.leases.byExpiry.Ascend(func(r *leaseRec) bool {
		if r.expires >= at {
			return false
		}
		expired++
		return true
	})
	return v.leases.len() - expired
}

// ExpiredLeases returns up to limit leases that expired before before, in
// expiry order: what a reap at that time removes (the audit's expiry
// records), in the same order the FSM's reapExpired walks.
func (v *View) ExpiredLeases(before time.Time, limit int) []*fsmpb.Lease {
	at := before.UnixNano()
	var out []*fsmpb.Lease
	v.leases.byExpiry.Ascend(func(r *leaseRec) bool {
		if r.expires >= at || len(out) >= limit {
			return false
		}
		out = append(out, v.leases.lease(r))
		return true
	})
	return out
}
