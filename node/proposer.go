package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/internal/clock"
	"github.com/writ-dev/writ/rpc"
)

// Group commit. Every write on the leader goes through one proposer loop
// that packs whatever proposals are waiting into one log entry (a Batch), so
// one bbolt commit (two fsyncs) carries many leases: the batch, not the
// request, is the unit of Raft work, and throughput grows with load.
//
// While softInflight entries are in flight, a batch that is neither full nor
// urgent waits for one of them to finish and takes in what arrives
// meanwhile, so everything rides in fewer, larger entries (each entry costs
// two fsynced bbolt commits per replica, an FSM transaction on every
// replica, an encode, a result fan-out). One entry in flight: see DESIGN.md
// ("Why hold at one") for the measurement against two. A write that finds
// nothing in flight goes at once. Full batches and
// revocations may use up to maxInflight, so a slow fsync does not stall the
// queue; beyond that the queue fills and callers get ErrOverloaded instead of
// the leader drowning and losing leadership.
const (
	maxBatchItems  = 512
	maxBatchBytes  = 1 << 20
	softInflight   = 1
	maxInflight    = 16
	queueDepth     = 4096
	applyTimeout   = 10 * time.Second
	enqueueTimeout = 2 * time.Second
)

// maxWriteBytes bounds one write; a write above maxBatchBytes (a large
// policy set) goes alone in its own entry. Half of fsm.MaxEntryBytes.
const maxWriteBytes = 8 << 20

type proposal struct {
	cmds   []*fsmpb.Command
	size   int
	urgent bool
	need   uint32              // the FSM version its commands require, after lowering
	done   chan proposalResult // buffered(1)
}

type proposalResult struct {
	results []*fsmpb.Result
	err     error
}

// raftApplier is the part of *raft.Raft the proposer uses (a fake in tests).
type raftApplier interface {
	Apply(cmd []byte, timeout time.Duration) raft.ApplyFuture
	ApplyLog(log raft.Log, timeout time.Duration) raft.ApplyFuture
}

type proposer struct {
	// clusterVersion is the oldest FSM version among the servers
	// (Node.ClusterFSMVersion): submit lowers commands to it.
	clusterVersion func() uint32
	raft           raftApplier
	clock          clock.Clock
	log            *slog.Logger
	queue          chan *proposal
	// urgentQ carries revocations past queued issuance: under overload a
	// revocation must not wait behind thousands of queued issues.
	urgentQ  chan *proposal
	inflight chan struct{}
	// freed gets a token whenever an entry leaves inflight (buffered 1): a
	// batch held by softInflight waits on it.
	freed chan struct{}
	taken atomic.Int64 // proposals the loop has taken off the queues (tests watch it)
	// kickDelay: a pushed revocation's kick waits this long (kickSoon);
	// 0 kicks at once.
	kickDelay   time.Duration
	kickPending atomic.Bool                 // a delayed kick is scheduled
	after       func(time.Duration, func()) // time.AfterFunc; tests fire it by hand
	// holders lists the voters known to enforce a revocation committed at
	// an index (Node.revocationHolders); nil reports none.
	holders func(index uint64) []string
	stop    chan struct{}
	done    chan struct{}
}

func newProposer(r raftApplier, c clock.Clock, log *slog.Logger, kickDelay time.Duration, clusterVersion func() uint32) *proposer {
	if clusterVersion == nil {
		clusterVersion = func() uint32 { return fsm.Version }
	}
	p := &proposer{
		clusterVersion: clusterVersion,
		kickDelay:      kickDelay,
		after:          func(d time.Duration, f func()) { time.AfterFunc(d, f) },
		raft:           r,
		clock:          c,
		log:            log,
		queue:          make(chan *proposal, queueDepth),
		urgentQ:        make(chan *proposal, queueDepth),
		inflight:       make(chan struct{}, maxInflight),
		freed:          make(chan struct{}, 1),
		stop:           make(chan struct{}),
		done:           make(chan struct{}),
	}
	go p.run()
	return p
}

func (p *proposer) close() {
	close(p.stop)
	<-p.done
}

// isUrgent: revocations must reach followers at once.
func isUrgent(cmd *fsmpb.Command) bool {
	switch cmd.GetPayload().(type) {
	case *fsmpb.Command_RevokeLease, *fsmpb.Command_RevokeIdentity, *fsmpb.Command_RevokeRole,
		*fsmpb.Command_RevokeOwner, *fsmpb.Command_RetireSigningKey:
		return true
	}
	return false
}

// submit queues commands for the next batch and waits for their results.
func (p *proposer) submit(ctx context.Context, cmds []*fsmpb.Command, urgent bool) ([]*fsmpb.Result, error) {
	pr := &proposal{cmds: cmds, urgent: urgent, need: 1, done: make(chan proposalResult, 1)}
	cv := p.clusterVersion()
	for _, c := range cmds {
		// Every write passes here: a command the FSM would halt on must
		// never reach the log, or it would halt every replica.
		if err := fsm.CheckCommand(c); err != nil {
			return nil, fmt.Errorf("refusing to propose: %w", err)
		}
		// Nor one an older server would halt on: lower it to what every
		// server applies alike, or refuse it.
		need := fsm.Requires(c)
		if need > cv {
			if !fsm.Lower(c, cv) {
				return nil, fmt.Errorf("%w: this write needs FSM version %d and the oldest server runs %d; upgrade every server first", rpc.ErrFSMVersion, need, cv)
			}
			need = fsm.Requires(c)
		}
		pr.need = max(pr.need, need)
		pr.size += proto.Size(c)
		pr.urgent = pr.urgent || isUrgent(c)
	}
	if pr.size > maxWriteBytes {
		return nil, fmt.Errorf("write of %d bytes exceeds the %d byte entry limit", pr.size, maxWriteBytes)
	}
	timer := time.NewTimer(enqueueTimeout)
	defer timer.Stop()
	q := p.queue
	if pr.urgent {
		q = p.urgentQ
	}
	select {
	case q <- pr:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, rpc.ErrOverloaded
	case <-p.stop:
		return nil, raft.ErrRaftShutdown
	}
	select {
	case res := <-pr.done:
		return res.results, res.err
	case <-ctx.Done():
		// The entry may still commit; a retry with the same request id is deduplicated.
		return nil, ctx.Err()
	}
}

func (p *proposer) run() {
	defer close(p.done)
	var carry *proposal
	for {
		var first *proposal
		if carry != nil {
			first, carry = carry, nil
		} else {
			first = p.next()
		}
		if first == nil {
			select {
			case first = <-p.urgentQ:
			case first = <-p.queue:
			case <-p.stop:
				p.drain(raft.ErrRaftShutdown)
				return
			}
			p.taken.Add(1)
		}
		b := &pending{batch: []*proposal{first}, items: len(first.cmds), size: first.size, urgent: first.urgent}
		for carry == nil && !b.full() {
			next := p.next()
			if next == nil {
				break
			}
			carry = b.add(next)
		}
		// Hold a batch that is neither full nor urgent while softInflight
		// entries are in flight; what arrives meanwhile joins it.
		for carry == nil && !b.full() && !b.urgent && len(p.inflight) >= softInflight {
			select {
			case <-p.freed:
			case next := <-p.urgentQ:
				p.taken.Add(1)
				carry = b.add(next)
			case next := <-p.queue:
				p.taken.Add(1)
				carry = b.add(next)
			case <-p.stop:
				fail(b.batch, raft.ErrRaftShutdown)
				p.drain(raft.ErrRaftShutdown)
				return
			}
		}
		batch, items := b.batch, b.items
		select {
		case p.inflight <- struct{}{}:
		case <-p.stop:
			fail(batch, raft.ErrRaftShutdown)
			if carry != nil {
				fail([]*proposal{carry}, raft.ErrRaftShutdown)
			}
			p.drain(raft.ErrRaftShutdown)
			return
		}
		p.apply(batch, items)
	}
}

// pending is the batch the loop is filling.
type pending struct {
	batch  []*proposal
	items  int
	size   int
	urgent bool
}

func (b *pending) full() bool { return b.items >= maxBatchItems || b.size >= maxBatchBytes }

// add appends pr, or returns it when it does not fit (it opens the next batch).
func (b *pending) add(pr *proposal) (carry *proposal) {
	if b.items+len(pr.cmds) > maxBatchItems || b.size+pr.size > maxBatchBytes {
		return pr
	}
	b.batch = append(b.batch, pr)
	b.items += len(pr.cmds)
	b.size += pr.size
	b.urgent = b.urgent || pr.urgent
	return nil
}

// release frees an in-flight slot and wakes a batch held by softInflight.
func (p *proposer) release() {
	<-p.inflight
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// next takes a waiting proposal without blocking, revocations first; nil
// when none waits.
func (p *proposer) next() *proposal {
	var pr *proposal
	select {
	case pr = <-p.urgentQ:
	default:
		select {
		case pr = <-p.urgentQ:
		case pr = <-p.queue:
		default:
			return nil
		}
	}
	p.taken.Add(1)
	return pr
}

func (p *proposer) drain(err error) {
	for pr := p.next(); pr != nil; pr = p.next() {
		fail([]*proposal{pr}, err)
	}
}

func fail(batch []*proposal, err error) {
	for _, pr := range batch {
		pr.done <- proposalResult{err: err}
	}
}

// apply encodes the batch as one entry stamped with the leader's clock and
// hands it to raft; a goroutine waits for the commit and fans results out.
func (p *proposer) apply(batch []*proposal, items int) {
	// The entry demands what its commands need, not this binary's version:
	// an older server halts only on entries it would misapply.
	var need uint32 = 1
	for _, pr := range batch {
		need = max(need, pr.need)
	}
	header := &fsmpb.Header{TimeUnixNano: p.clock.Now().UnixNano(), MinFsmVersion: need}
	var entry *fsmpb.Command
	if items == 1 {
		entry = proto.Clone(batch[0].cmds[0]).(*fsmpb.Command)
		if entry.Header == nil {
			entry.Header = &fsmpb.Header{}
		}
		entry.Header.TimeUnixNano = header.TimeUnixNano
		entry.Header.MinFsmVersion = header.MinFsmVersion
	} else {
		all := make([]*fsmpb.Command, 0, items)
		for _, pr := range batch {
			all = append(all, pr.cmds...)
		}
		entry = &fsmpb.Command{Header: header, Payload: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Commands: all}}}
	}
	data, err := fsm.Encode(entry)
	if err != nil {
		p.release()
		fail(batch, fmt.Errorf("encode entry: %w", err))
		return
	}
	urgent := false
	for _, pr := range batch {
		urgent = urgent || pr.urgent
	}
	// What the entry revokes rides in its extensions, so every replica
	// enforces it as it stores the entry (announce.go).
	var ext []byte
	if urgent {
		var ps []fsm.Pending
		for _, pr := range batch {
			ps = append(ps, fsm.Announced(pr.cmds)...)
		}
		if ext, err = fsm.EncodeAnnounce(ps); err != nil {
			p.release()
			fail(batch, err)
			return
		}
	}
	var f raft.ApplyFuture
	if ext != nil {
		f = p.raft.ApplyLog(raft.Log{Data: data, Extensions: ext}, applyTimeout)
	} else {
		f = p.raft.Apply(data, applyTimeout)
	}
	go func() {
		released := false
		release := func() {
			if !released {
				released = true
				p.release()
			}
		}
		defer release()
		if err := f.Error(); err != nil {
			fail(batch, leaderError(err))
			return
		}
		results, ok := f.Response().([]*fsmpb.Result)
		if !ok || len(results) != items {
			fail(batch, fmt.Errorf("fsm returned %d results for %d commands", len(results), items))
			return
		}
		switch {
		case urgent && (p.kickDelay <= 0 || mustKickNow(batch)):
			p.kick()
		case urgent:
			p.kickSoon()
		}
		if ext != nil && p.holders != nil {
			// The entry is applied: its in-flight slot must not be held
			// for the wait, or the next entry would wait with it.
			release()
			results = withHolders(batch, results, p.holders(f.Index()))
		}
		off := 0
		for _, pr := range batch {
			pr.done <- proposalResult{results: results[off : off+len(pr.cmds)]}
			off += len(pr.cmds)
		}
	}()
}

// withHolders copies results, setting holders on each revocation's result
// (the FSM's own results are left alone: it may remember them).
func withHolders(batch []*proposal, results []*fsmpb.Result, holders []string) []*fsmpb.Result {
	if len(holders) == 0 {
		return results
	}
	out := make([]*fsmpb.Result, len(results))
	copy(out, results)
	i := 0
	for _, pr := range batch {
		for _, c := range pr.cmds {
			if _, ok := fsm.PendingOf(c); ok && out[i] != nil {
				r := proto.Clone(out[i]).(*fsmpb.Result)
				r.Holders = holders
				out[i] = r
			}
			i++
		}
	}
	return out
}

// mustKickNow: a batch with an urgent command that is not pushed
// (retiring a signing key) waits for the followers' apply, so it is kicked
// at once; pushed revocations are in force everywhere before the apply.
func mustKickNow(batch []*proposal) bool {
	for _, pr := range batch {
		for _, c := range pr.cmds {
			if _, ok := c.GetPayload().(*fsmpb.Command_RetireSigningKey); ok {
				return true
			}
		}
	}
	return false
}

// kickSoon kicks kickDelay from now unless a kick is already pending:
// revocations applied meanwhile share it.
func (p *proposer) kickSoon() {
	if !p.kickPending.CompareAndSwap(false, true) {
		return
	}
	p.after(p.kickDelay, func() {
		p.kickPending.Store(false)
		select {
		case <-p.stop:
			return
		default:
		}
		p.kick()
	})
}

// kick appends an empty entry so followers learn the new commit index in one
// round trip: hashicorp/raft heartbeats do not carry it, so otherwise a lone
// entry waits for the next append or CommitTimeout.
func (p *proposer) kick() {
	data, err := fsm.Encode(&fsmpb.Command{
		Header:  &fsmpb.Header{TimeUnixNano: p.clock.Now().UnixNano()},
		Payload: &fsmpb.Command_Noop{Noop: &fsmpb.Noop{}},
	})
	if err != nil {
		p.log.Error("encode noop", "err", err)
		return
	}
	p.raft.Apply(data, applyTimeout) // not awaited: its append is what matters
}

// leaderError maps raft's leadership errors onto the backend contract.
func leaderError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %v", errRetryable, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return rpc.ErrOverloaded
	}
	return err
}

// errRetryable marks a write that failed because leadership moved; the
// caller may retry (request ids make the retry safe).
var errRetryable = errors.New("leadership changed")
