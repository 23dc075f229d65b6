package audit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Deps are what a Log needs besides its Config.
type Deps struct {
	// Node is this node's id, stamped on every record.
	Node string
	// Key returns the cluster's replicated HMAC key (nil before bootstrap);
	// Hash derives the audit key from it.
	Key func() []byte
	// Now stamps records; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Registerer receives the audit metrics; nil registers none.
	Registerer prometheus.Registerer
	// Stdout is the stdout sink's writer; default os.Stdout.
	Stdout io.Writer
	// OpenSink overrides how a stream's sink is opened (tests inject
	// failing or blocking sinks); nil opens what the config says.
	OpenSink func(stream Stream, sc *StreamConfig, path string) (Sink, error)
}

// Log is one node's audit log: three streams, each with its own sink, hash
// chain, filters, in-memory queue and on-disk spool.
//
// Concurrency: Durable, Record, Hash, Heads, Watch and Config are safe for
// concurrent use. Record never blocks; Durable blocks for at most the
// configured DurableTimeout (or ctx). A stuck or failing sink stalls only
// its own stream's writer goroutine: must records of that stream fail
// closed, its spooled records wait in the spool (then are dropped and
// counted in a gap record), and every other stream and request goes on.
type Log struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	m    *metrics

	streams [3]*stream

	keyMu      sync.Mutex
	clusterKey []byte
	auditKey   []byte

	subMu sync.Mutex
	subs  map[*Subscription]struct{}

	closeOnce sync.Once
	quit      chan struct{}
	wg        sync.WaitGroup
}

// Drop reasons in gap records.
const (
	DropQueueFull  = "queue_full"  // the in-memory queue in front of the spool was full
	DropSpoolFull  = "spool_full"  // the on-disk spool reached spool_max_bytes
	DropSpoolError = "spool_error" // the spool's disk refused the write
	DropSinkError  = "sink_error"  // a record the sink rejected permanently (it could not be encoded)
)

var dropReasons = []string{DropQueueFull, DropSpoolFull, DropSpoolError, DropSinkError}

type stream struct {
	l       *Log
	name    Stream
	cfg     *StreamConfig
	sink    Sink
	spool   *spool
	filters []*filterState

	queue  chan *Event
	must   chan *mustReq
	wake   chan struct{}
	direct chan [][]byte // spooler → writer hand-off while nothing is spooled (directBatches)

	dropped [4]atomic.Uint64

	// writer-owned chain state
	seq      uint64
	prev     string
	dirty    bool // written since the last sync
	lastSync time.Time

	headMu   sync.Mutex
	headSeq  uint64
	headHash string

	spoolerDone chan struct{}

	// encHint (spooler-owned) is the buffer an item-less record starts
	// with: a little more than the last one took (encode).
	encHint int
}

type mustReq struct {
	ev        *Event
	done      chan error
	abandoned atomic.Bool
}

type filterState struct {
	Filter
	seen    atomic.Uint64
	dropped atomic.Uint64
}

// Open validates cfg, opens every stream's sink and spool, continues each
// file's chain from its last record, writes a start record to each stream
// and starts the writers. It fails when a sink cannot be opened or its
// start record cannot be made durable: a node does not serve unaudited.
func Open(cfg Config, deps Deps) (*Log, error) {
	eff, err := cfg.Effective()
	if err != nil {
		return nil, err
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Stdout == nil {
		deps.Stdout = os.Stdout
	}
	if deps.Key == nil {
		deps.Key = func() []byte { return nil }
	}
	l := &Log{cfg: eff, deps: deps, log: deps.Logger.With("component", "audit"), quit: make(chan struct{}), subs: map[*Subscription]struct{}{}}
	l.m = newMetrics(deps.Registerer, l)
	stdout := &lockedWriter{w: deps.Stdout}
	for i, name := range Streams {
		sc := eff.Streams[name]
		s := &stream{
			l: l, name: name, cfg: sc,
			queue:       make(chan *Event, eff.QueueLen),
			must:        make(chan *mustReq, 64),
			wake:        make(chan struct{}, 1),
			direct:      make(chan [][]byte, directBatches),
			spoolerDone: make(chan struct{}),
		}
		for _, f := range sc.Filters {
			s.filters = append(s.filters, &filterState{Filter: f})
		}
		path := sc.Path
		if !filepath.IsAbs(path) {
			path = filepath.Join(eff.Dir, path)
		}
		switch {
		case deps.OpenSink != nil:
			s.sink, err = deps.OpenSink(name, sc, path)
		case sc.Sink == SinkStdout:
			s.sink = &writerSink{w: stdout, name: "stdout"}
		default:
			s.sink, err = openFileSink(path, sc.Durability == DurabilityFsync, sc.RotateBytes, sc.KeepFiles, deps.Now)
		}
		if err == nil {
			s.spool, err = openSpool(filepath.Join(eff.Dir, "spool"), string(name), eff.SpoolMaxBytes)
		}
		if err != nil {
			l.closeOpened()
			return nil, fmt.Errorf("audit stream %s: %w", name, err)
		}
		if tail := s.sink.Tail(); tail != nil {
			rec, err := parseLine(tail)
			if err != nil {
				l.closeOpened()
				return nil, fmt.Errorf("audit stream %s: cannot continue the chain of %s: %w", name, s.sink.Describe(), err)
			}
			s.seq, s.prev = rec.Seq, rec.Hash
		}
		s.headSeq, s.headHash = s.seq, s.prev
		l.streams[i] = s
	}
	for _, s := range l.streams {
		start := &Event{Type: TypeStart, Actor: systemActor, Reason: "audit log opened; sink " + s.sink.Describe()}
		s.stamp(start)
		if err := s.writeOne(start); err != nil {
			l.closeOpened()
			return nil, fmt.Errorf("audit stream %s: start record: %w", s.name, err)
		}
	}
	for _, s := range l.streams {
		l.wg.Add(2)
		go s.spooler()
		go s.writer()
	}
	return l, nil
}

var systemActor = Actor{ID: "writ", Kind: "system"}

func (l *Log) closeOpened() {
	for _, s := range l.streams {
		if s == nil {
			continue
		}
		if s.sink != nil {
			_ = s.sink.Close()
		}
		if s.spool != nil {
			_ = s.spool.close()
		}
	}
}

// Config returns the effective configuration.
func (l *Log) Config() Config { return l.cfg }

func (l *Log) stream(a Actor) *stream {
	switch StreamFor(a) {
	case StreamHuman:
		return l.streams[0]
	case StreamAgent:
		return l.streams[2]
	}
	return l.streams[1]
}

func (s *stream) stamp(ev *Event) {
	if ev.Time.IsZero() {
		ev.Time = s.l.deps.Now()
	}
	ev.Time = ev.Time.UTC()
	ev.Node = s.l.deps.Node
	ev.Stream = s.name
}

// Durable writes ev to its stream's sink and returns once it is durable
// (written and fsynced, or written, per the stream's durability), before the
// change it describes is made. It fails with an error wrapping
// ErrNotDurable when the sink fails or does not answer within
// DurableTimeout: the caller must then not make the change. Filters never
// apply. If the caller gave up waiting, the record is not written later.
func (l *Log) Durable(ctx context.Context, ev *Event) error {
	s := l.stream(ev.Actor)
	s.stamp(ev)
	r := &mustReq{ev: ev, done: make(chan error, 1)}
	t := time.NewTimer(l.cfg.DurableTimeout)
	defer t.Stop()
	fail := func(why string) error {
		r.abandoned.Store(true)
		l.m.durableFailures.WithLabelValues(string(s.name)).Inc()
		return fmt.Errorf("%w: %s stream: %s", ErrNotDurable, s.name, why)
	}
	select {
	case s.must <- r:
	case <-t.C:
		return fail(fmt.Sprintf("sink %s did not accept the record within %s", s.sink.Describe(), l.cfg.DurableTimeout))
	case <-ctx.Done():
		return fail(ctx.Err().Error())
	case <-l.quit:
		return fail(ErrClosed.Error())
	}
	select {
	case err := <-r.done:
		if err != nil {
			l.m.durableFailures.WithLabelValues(string(s.name)).Inc()
			return fmt.Errorf("%w: %s stream: %v", ErrNotDurable, s.name, err)
		}
		return nil
	case <-t.C:
		return fail(fmt.Sprintf("sink %s did not confirm within %s", s.sink.Describe(), l.cfg.DurableTimeout))
	case <-ctx.Done():
		return fail(ctx.Err().Error())
	}
}

// Record spools ev for its stream's sink. It never blocks: when the queue
// is full the record is dropped and counted, and the stream's next gap
// record says how many and why. The stream's filters may drop it on
// purpose (counted in a filtered record).
func (l *Log) Record(ev *Event) { l.enqueue(ev, false, time.Time{}) }

// RecordBy spools ev like Record, but when the stream's queue is full it
// waits for room until deadline (at most the configured queue_wait from
// now) before dropping it: a request's record slows its request down
// rather than leave a gap when records come faster than the spooler takes
// them (CPU saturation). A stuck sink holds callers up only briefly: after
// directWait its records go to the spool, and once that is full the spooler
// drops them at once, which keeps the queue moving. A zero deadline waits the whole
// queue_wait. Background records (expiries, membership) use Record: they
// must never hold up the goroutine that makes them.
func (l *Log) RecordBy(ev *Event, deadline time.Time) { l.enqueue(ev, true, deadline) }

// enqueue filters ev and sends it to its stream's queue; when the queue is
// full it drops ev at once, or with wait first waits for room (RecordBy).
func (l *Log) enqueue(ev *Event, wait bool, deadline time.Time) {
	s := l.stream(ev.Actor)
	s.stamp(ev)
	if !s.filter(ev) {
		return
	}
	select {
	case s.queue <- ev:
		return
	default:
	}
	if wait && l.cfg.QueueWait > 0 {
		now := time.Now()
		limit := now.Add(l.cfg.QueueWait)
		if deadline.IsZero() || deadline.After(limit) {
			deadline = limit
		}
		if d := deadline.Sub(now); d > 0 {
			l.m.queueWaits.WithLabelValues(string(s.name)).Inc()
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case s.queue <- ev:
				return
			case <-t.C:
			case <-l.quit:
			}
		}
	}
	s.drop(DropQueueFull, 1)
}

// QueueDeadline is the latest a request starting now may wait for room
// in a full queue (RecordBy): a call that records several events (a batch)
// shares it among them.
func (l *Log) QueueDeadline() time.Time {
	if l.cfg.QueueWait <= 0 {
		return time.Now()
	}
	return time.Now().Add(l.cfg.QueueWait)
}

// filter applies the stream's filters: false when one drops ev on purpose
// (counted, and reported by the next filtered record).
func (s *stream) filter(ev *Event) bool {
	for _, f := range s.filters {
		if f.matches(ev) {
			if !f.keep() {
				f.dropped.Add(1)
				s.l.m.filtered.WithLabelValues(string(s.name), f.Name).Inc()
				return false
			}
			break
		}
	}
	return true
}

func (s *stream) drop(reason string, n uint64) {
	s.dropped[slices.Index(dropReasons, reason)].Add(n)
	s.l.m.dropped.WithLabelValues(string(s.name), reason).Add(float64(n))
}

func (f *filterState) matches(ev *Event) bool {
	if !slices.Contains(f.Types, ev.Type) {
		return false
	}
	if len(f.Methods) > 0 && !slices.Contains(f.Methods, ev.Method) {
		return false
	}
	if f.Decision != "" && f.Decision != ev.Decision {
		return false
	}
	return !f.HealthyOnly || ev.Healthy
}

// keep samples deterministically: of every n matching records,
// round(n*SampleRate) are kept, evenly spread.
func (f *filterState) keep() bool {
	n := f.seen.Add(1)
	return uint64(float64(n)*f.SampleRate) > uint64(float64(n-1)*f.SampleRate)
}

// spooler moves queued events into the on-disk spool in batches.
func (s *stream) spooler() {
	defer s.l.wg.Done()
	defer close(s.spoolerDone)
	batch := make([][]byte, 0, 256)
	for {
		var ev *Event
		select {
		case ev = <-s.queue:
		case <-s.l.quit:
			// Drain what is queued, then stop.
			for {
				select {
				case ev := <-s.queue:
					s.spoolBatch(append(batch[:0], s.encode(ev)))
				default:
					return
				}
			}
		}
		batch = append(batch[:0], s.encode(ev))
		batch = s.drainQueue(batch)
		if len(batch) < cap(batch)/4 {
			// Linger a moment so a batch collects: one hand-off (and one
			// write) per millisecond instead of per record at moderate
			// rates, where goroutine wake-ups were most of the cost.
			time.Sleep(spoolLinger)
			batch = s.drainQueue(batch)
		}
		s.spoolBatch(batch)
	}
}

// directBatches is how many encoded batches the spooler may hand the
// writer ahead of it, and directWait how long it waits for the writer to
// take one when they are all taken, before it spools. With one batch and no
// wait, a writer a moment behind (a hash-chain burst, a descheduled
// goroutine) sent every record through the spool file and back for as long
// as the backlog lasted, which under BatchAuthorize load was most of the
// time. A stalled or failing sink still fills the spool: directWait after
// the writer stops taking, and at once from then on (records go to the
// spool while it holds any).
const (
	directBatches = 4
	directWait    = 50 * time.Millisecond
)

// spoolLinger is how long the spooler waits for a small batch to grow.
const spoolLinger = time.Millisecond

func (s *stream) drainQueue(batch [][]byte) [][]byte {
	for len(batch) < cap(batch) {
		select {
		case ev := <-s.queue:
			batch = append(batch, s.encode(ev))
		default:
			return batch
		}
	}
	return batch
}

// encode sizes the buffer for the record, so it is allocated once: a batch
// record by its items (not copied through a series of doublings), any other
// by the size of the last such record on the stream plus an eighth. A
// stream's records are much alike (an Authorize record is about 580 bytes),
// and a fixed 512-byte start made nearly every one grow once: two
// allocations, 1,408 bytes and a copy, where one of 704 bytes does
// (TestEncodeAllocatesOnce).
func (s *stream) encode(ev *Event) []byte {
	if len(ev.Items) > 0 {
		return appendEvent(make([]byte, 0, 512+256*len(ev.Items)), ev)
	}
	b := appendEvent(make([]byte, 0, max(s.encHint, 256)), ev)
	s.encHint = min(len(b)+len(b)/8, 16<<10)
	return b
}

func (s *stream) spoolBatch(batch [][]byte) {
	kept := make([][]byte, 0, len(batch)) // fresh: it may go straight to the writer
	for _, b := range batch {
		if b != nil {
			kept = append(kept, b)
		}
	}
	refused, err := s.spool.offer(kept, s.direct, directWait, s.l.quit)
	if err != nil {
		s.drop(DropSpoolError, uint64(refused))
		s.l.log.Warn("audit spool write failed", "stream", s.name, "err", err)
	} else if refused > 0 {
		s.drop(DropSpoolFull, uint64(refused))
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// spooledSyncInterval groups the fsyncs of spooled batches: at most one per
// interval (a must record always syncs at once, covering what came before).
const spooledSyncInterval = 50 * time.Millisecond

// batch is what the writer holds until the sink took it.
type batch struct {
	recs      [][]byte
	n         int64 // spool bytes to commit; 0 for a batch handed over directly
	fromSpool bool
}

// writer owns the stream's chain and sink: must records first, then the
// batch it is retrying, then handed-over or spooled batches, then the
// accounting records (gaps, filter counts) and grouped syncs.
func (s *stream) writer() {
	defer s.l.wg.Done()
	summary := time.NewTicker(min(10*time.Second, s.l.cfg.CheckpointInterval))
	defer summary.Stop()
	var pause time.Duration // grows while the sink fails, 0 once it works
	var retry *time.Timer   // non-nil while pausing after a failure
	var held *batch         // taken from the spool or the hand-off, not yet written
	var syncT *time.Timer   // armed while spooled writes await their fsync
	var buf []byte
	for {
		select {
		case r := <-s.must:
			s.writeMust(r)
			continue
		default:
		}
		if retry == nil {
			s.writeGaps()
			if held == nil {
				recs, n, fromSpool, err := s.spool.take(s.direct, 256, 256<<10)
				if err != nil {
					s.l.log.Error("audit spool read failed", "stream", s.name, "err", err)
				}
				if len(recs) > 0 {
					held = &batch{recs: recs, n: n, fromSpool: fromSpool}
				}
			}
			if held != nil {
				if err := s.writeBatch(&buf, held.recs, false); err != nil {
					s.l.m.sinkErrors.WithLabelValues(string(s.name)).Inc()
					// A failing sink is retried with growing pauses (at
					// most 5s); records wait in the spool meanwhile.
					pause = min(max(2*pause, 50*time.Millisecond), 5*time.Second)
					s.l.log.Warn("audit sink failed; records stay spooled", "stream", s.name, "sink", s.sink.Describe(), "retry_in", pause, "err", err)
					retry = time.NewTimer(pause)
				} else {
					pause = 0
					if held.fromSpool {
						s.spool.commit(held.n, len(held.recs))
					}
					held = nil
					if s.dirty && syncT == nil {
						syncT = time.NewTimer(max(0, spooledSyncInterval-time.Since(s.lastSync)))
					}
				}
				continue
			}
		}
		var retryC, syncC <-chan time.Time
		if retry != nil {
			retryC = retry.C
		}
		if syncT != nil {
			syncC = syncT.C
		}
		select {
		case r := <-s.must:
			s.writeMust(r)
		case <-s.wake:
		case <-retryC:
			retry = nil
		case <-syncC:
			syncT = nil
			if s.dirty {
				if err := s.syncNow(); err != nil {
					s.l.m.sinkErrors.WithLabelValues(string(s.name)).Inc()
					s.l.log.Warn("audit sink sync failed", "stream", s.name, "sink", s.sink.Describe(), "err", err)
				}
			}
		case <-summary.C:
			s.writeFiltered()
		case <-s.l.quit:
			if retry != nil {
				retry.Stop()
			}
			s.drainOnClose(&buf, held)
			return
		}
	}
}

// drainOnClose writes what is held, handed over or spooled (for at most
// 2s), the final accounting records, and syncs. A batch it cannot write
// goes back to the spool, to be replayed at the next start.
func (s *stream) drainOnClose(buf *[]byte, held *batch) {
	<-s.spoolerDone
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		s.writeGaps()
		if held == nil {
			recs, n, fromSpool, err := s.spool.take(s.direct, 256, 256<<10)
			if err != nil || len(recs) == 0 {
				break
			}
			held = &batch{recs: recs, n: n, fromSpool: fromSpool}
		}
		if err := s.writeBatch(buf, held.recs, false); err != nil {
			break
		}
		if held.fromSpool {
			s.spool.commit(held.n, len(held.recs))
		}
		held = nil
	}
	if held != nil && !held.fromSpool {
		_, _ = s.spool.append(held.recs)
	}
	for len(s.direct) > 0 { // the spooler has stopped: nothing else sends
		_, _ = s.spool.append(<-s.direct)
	}
	s.writeGaps()
	s.writeFiltered()
	if s.dirty {
		_ = s.syncNow()
	}
}

// writeMust makes r durable together with every must record already
// waiting behind it (up to mustBatch): one write and one fsync for the
// group, as a database's group commit. Under issuance load a node's callers
// used to queue for one fsync each, and the fsyncs were a twentieth of
// the servers' CPU. A failed write fails every record in the group.
func (s *stream) writeMust(r *mustReq) {
	group := make([]*mustReq, 0, 8)
	bodies := make([][]byte, 0, 8)
	add := func(r *mustReq) {
		if r.abandoned.Load() {
			r.done <- ErrNotDurable
			return
		}
		group = append(group, r)
		bodies = append(bodies, appendEvent(nil, r.ev))
	}
	add(r)
more:
	for len(group) < mustBatch {
		select {
		case r := <-s.must:
			add(r)
		default:
			break more
		}
	}
	if len(group) == 0 {
		return
	}
	var buf []byte
	err := s.writeBatch(&buf, bodies, true)
	for _, r := range group {
		r.done <- err
	}
}

// mustBatch bounds one group of must records.
const mustBatch = 256

// writeOne chains, writes and syncs one event (a must record, or an
// accounting record).
func (s *stream) writeOne(ev *Event) error {
	var buf []byte
	return s.writeBatch(&buf, [][]byte{appendEvent(nil, ev)}, true)
}

// writeBatch chains bodies onto the stream and writes them in one call.
// The chain advances only when the sink took every line. sync: fsync now
// (must records); otherwise the writer syncs within spooledSyncInterval.
func (s *stream) writeBatch(buf *[]byte, bodies [][]byte, sync bool) error {
	b := (*buf)[:0]
	seq, prev := s.seq, s.prev
	starts := make([]int, 0, len(bodies))
	for _, body := range bodies {
		seq++
		starts = append(starts, len(b))
		b, prev = encodeLine(b, seq, prev, body)
	}
	*buf = b
	if err := s.sink.Write(b); err != nil {
		return err
	}
	s.seq, s.prev = seq, prev
	s.dirty = true
	s.l.m.records.WithLabelValues(string(s.name)).Add(float64(len(bodies)))
	s.l.publish(s.name, b, starts)
	if sync || time.Since(s.lastSync) >= spooledSyncInterval {
		return s.syncNow()
	}
	return nil
}

// syncNow makes everything written durable and moves the head that
// checkpoints vouch for.
func (s *stream) syncNow() error {
	if err := s.sink.Sync(); err != nil {
		return err
	}
	s.lastSync, s.dirty = time.Now(), false
	s.headMu.Lock()
	s.headSeq, s.headHash = s.seq, s.prev
	s.headMu.Unlock()
	return nil
}

// writeGaps writes one gap record per reason that dropped records since
// the last one. If the sink refuses, the counts wait for the next try.
func (s *stream) writeGaps() {
	for i, reason := range dropReasons {
		n := s.dropped[i].Swap(0)
		if n == 0 {
			continue
		}
		ev := &Event{Type: TypeGap, Actor: systemActor, Gap: &Gap{Dropped: n, Reason: reason}}
		s.stamp(ev)
		if err := s.writeOne(ev); err != nil {
			s.dropped[i].Add(n)
			return
		}
	}
}

// writeFiltered writes the counts of records filters dropped on purpose.
func (s *stream) writeFiltered() {
	counts := map[string]uint64{}
	for _, f := range s.filters {
		if n := f.dropped.Swap(0); n > 0 {
			counts[f.Name] = n
		}
	}
	if len(counts) == 0 {
		return
	}
	ev := &Event{Type: TypeFiltered, Actor: systemActor, Filtered: counts}
	s.stamp(ev)
	if err := s.writeOne(ev); err != nil {
		for _, f := range s.filters {
			f.dropped.Add(counts[f.Name])
		}
	}
}

// Head is a stream's durable chain head.
type Head struct {
	Stream Stream
	Seq    uint64
	Hash   string
}

// Heads returns every stream's last durable record (seq and hash), for
// checkpointing into Raft.
func (l *Log) Heads() []Head {
	out := make([]Head, 0, len(l.streams))
	for _, s := range l.streams {
		s.headMu.Lock()
		out = append(out, Head{Stream: s.name, Seq: s.headSeq, Hash: s.headHash})
		s.headMu.Unlock()
	}
	return out
}

// Hash returns the keyed hash of value with the cluster's audit key, or ""
// before the cluster is bootstrapped.
func (l *Log) Hash(value string) string {
	key := l.key()
	if key == nil {
		return ""
	}
	return HMAC(key, value)
}

func (l *Log) key() []byte {
	ck := l.deps.Key()
	if ck == nil {
		return nil
	}
	l.keyMu.Lock()
	defer l.keyMu.Unlock()
	if !bytes.Equal(ck, l.clusterKey) {
		l.clusterKey = bytes.Clone(ck)
		l.auditKey = DeriveKey(ck)
	}
	return l.auditKey
}

// Close stops accepting records, drains the queues and spools to the sinks
// (for at most 2s per stream), writes final gap and filtered records, and
// closes sinks and spools.
func (l *Log) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.quit)
		l.wg.Wait()
		var errs []error
		for _, s := range l.streams {
			errs = append(errs, s.sink.Close(), s.spool.close())
		}
		l.subMu.Lock()
		for sub := range l.subs {
			close(sub.c)
			delete(l.subs, sub)
		}
		l.subMu.Unlock()
		err = joinErrs(errs)
	})
	return err
}

func joinErrs(errs []error) error {
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return fmt.Errorf("close audit log: %v", out)
}
