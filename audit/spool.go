package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// spool is a bounded on-disk FIFO of encoded events waiting for their sink:
// segment files <dir>/<stream>-<n>.spool of length-prefixed records.
// Records are appended by the stream's spooler goroutine and removed by its
// writer only after the sink took them, so a failing or stuck sink makes the
// spool grow (to maxBytes, then appends are refused and counted as drops)
// instead of losing records or blocking callers. Records are not fsynced:
// they survive a crash of the process (the OS holds them), and a restart
// replays whatever the spool still holds, so delivery is at least once.
//
// Concurrency: one mutex; both goroutines hold it only for a write or a
// read of at most one batch.
type spool struct {
	dir, name string
	maxBytes  int64
	segBytes  int64

	mu      sync.Mutex
	segs    []*segment // oldest first; the last takes appends
	roff    int64      // read offset in segs[0]
	pending int64      // bytes not yet read past
	records int64      // records not yet read past
	nextID  uint64
}

type segment struct {
	id   uint64
	path string
	f    *os.File
	size int64
}

const recHeader = 4

func openSpool(dir, name string, maxBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	s := &spool{dir: dir, name: name, maxBytes: maxBytes, segBytes: min(4<<20, max(maxBytes/4, 64<<10))}
	matches, err := filepath.Glob(filepath.Join(dir, name+"-*.spool"))
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, m := range matches {
		base := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), name+"-"), ".spool")
		if id, err := strconv.ParseUint(base, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		seg, err := s.openSegment(id)
		if err != nil {
			return nil, err
		}
		n, good, err := countRecords(seg.f, seg.size)
		if err != nil {
			return nil, err
		}
		if good < seg.size { // a crash cut the last record short
			if err := seg.f.Truncate(good); err != nil {
				return nil, fmt.Errorf("audit spool: %w", err)
			}
			seg.size = good
		}
		s.segs = append(s.segs, seg)
		s.pending += seg.size
		s.records += n
		s.nextID = id + 1
	}
	if len(s.segs) == 0 {
		seg, err := s.openSegment(s.nextID)
		if err != nil {
			return nil, err
		}
		s.nextID++
		s.segs = append(s.segs, seg)
	}
	return s, nil
}

func (s *spool) openSegment(id uint64) (*segment, error) {
	p := filepath.Join(s.dir, fmt.Sprintf("%s-%012d.spool", s.name, id))
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	return &segment{id: id, path: p, f: f, size: st.Size()}, nil
}

func countRecords(f *os.File, size int64) (n int64, good int64, err error) {
	var hdr [recHeader]byte
	for off := int64(0); off < size; {
		if off+recHeader > size {
			return n, off, nil
		}
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return 0, 0, fmt.Errorf("audit spool: %w", err)
		}
		next := off + recHeader + int64(binary.BigEndian.Uint32(hdr[:]))
		if next > size {
			return n, off, nil
		}
		n++
		off = next
	}
	return n, size, nil
}

// append adds records; it returns how many it refused because the spool
// is full, and an error if the disk refused the write (all refused).
func (s *spool) append(recs [][]byte) (refused int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var buf []byte
	accepted := 0
	for _, r := range recs {
		need := int64(recHeader + len(r))
		if s.pending+int64(len(buf))+need > s.maxBytes {
			refused++
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r)))
		buf = append(buf, r...)
		accepted++
	}
	if len(buf) == 0 {
		return refused, nil
	}
	last := s.segs[len(s.segs)-1]
	if last.size > 0 && last.size+int64(len(buf)) > s.segBytes {
		seg, err := s.openSegment(s.nextID)
		if err != nil {
			return len(recs), err
		}
		s.nextID++
		s.segs = append(s.segs, seg)
		last = seg
	}
	n, err := last.f.WriteAt(buf, last.size)
	if err != nil {
		if n > 0 {
			_ = last.f.Truncate(last.size)
		}
		return len(recs), fmt.Errorf("audit spool: %w", err)
	}
	last.size += int64(n)
	s.pending += int64(n)
	s.records += int64(accepted)
	return refused, nil
}

// offer hands batch straight to the writer through direct when nothing is
// spooled — the common case, when the sink keeps up, costs no spool I/O —
// and appends it otherwise. When direct is full it first waits up to wait
// (or until quit) for the writer to take one: the spool is for a sink that
// fails or stalls, not for a writer a moment behind, and sending records
// through the spool file and back cost a third of the audit pipeline's CPU
// under BatchAuthorize load. Order is kept: only the spooler appends, so
// the spool stays empty while it waits, a handed-over batch is older than
// anything spooled after it, and take looks at direct first.
func (s *spool) offer(batch [][]byte, direct chan [][]byte, wait time.Duration, quit <-chan struct{}) (refused int, err error) {
	s.mu.Lock()
	empty := s.pending == 0
	s.mu.Unlock()
	if empty {
		select {
		case direct <- batch:
			return 0, nil
		default:
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case direct <- batch:
				return 0, nil
			case <-t.C:
			case <-quit:
			}
		}
	}
	return s.append(batch)
}

// take returns the next batch for the writer: a handed-over one (nothing
// to commit), else up to maxRecs spooled records (commit them once written).
func (s *spool) take(direct chan [][]byte, maxRecs int, maxBytes int64) ([][]byte, int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case b := <-direct:
		return b, 0, false, nil
	default:
	}
	recs, n, err := s.peekLocked(maxRecs, maxBytes)
	return recs, n, true, err
}

// peekLocked returns up to maxRecs records from the head without removing
// them, and the byte count to pass to commit once the sink has them.
func (s *spool) peekLocked(maxRecs int, maxBytes int64) ([][]byte, int64, error) {
	seg := s.segs[0]
	for seg.size == s.roff && len(s.segs) > 1 {
		_ = seg.f.Close()
		_ = os.Remove(seg.path)
		s.segs, s.roff = s.segs[1:], 0
		seg = s.segs[0]
	}
	avail := seg.size - s.roff
	if avail == 0 {
		return nil, 0, nil
	}
	buf := make([]byte, min(avail, max(maxBytes, 64<<10)))
	if _, err := seg.f.ReadAt(buf, s.roff); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("audit spool: %w", err)
	}
	var out [][]byte
	var used int64
	for len(out) < maxRecs && int64(len(buf))-used >= recHeader {
		l := int64(binary.BigEndian.Uint32(buf[used:]))
		if used+recHeader+l > int64(len(buf)) {
			if len(out) == 0 { // one record larger than the window
				big := make([]byte, l)
				if _, err := seg.f.ReadAt(big, s.roff+recHeader); err != nil {
					return nil, 0, fmt.Errorf("audit spool: %w", err)
				}
				return [][]byte{big}, recHeader + l, nil
			}
			break
		}
		out = append(out, buf[used+recHeader:used+recHeader+l])
		used += recHeader + l
	}
	return out, used, nil
}

// commit removes n bytes (records) returned by peek from the head.
func (s *spool) commit(n int64, recs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roff += n
	s.pending -= n
	s.records -= int64(recs)
	seg := s.segs[0]
	if s.roff < seg.size {
		return
	}
	if len(s.segs) > 1 {
		_ = seg.f.Close()
		_ = os.Remove(seg.path)
		s.segs = s.segs[1:]
		s.roff = 0
		return
	}
	// Drained: start the one segment over once it has grown (truncating
	// on every drain would cost a syscall per batch).
	if seg.size >= s.segBytes/2 {
		if err := seg.f.Truncate(0); err == nil {
			seg.size, s.roff = 0, 0
		}
	}
}

// depth returns the records and bytes waiting.
func (s *spool) depth() (records, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records, s.pending
}

// close leaves on disk only what was not read past, so that a clean
// restart replays nothing the sink already took: the read offset lives in
// memory, and a drained segment is truncated only once it has grown (see
// commit). A drained spool is emptied; a partly read first segment is
// rewritten without its read records (a new file renamed over it). After a
// crash the old offset is lost and delivery is at least once, as above.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	switch {
	case len(s.segs) == 0:
	case s.pending == 0:
		for _, seg := range s.segs {
			errs = append(errs, seg.f.Truncate(0))
		}
	case s.roff > 0:
		errs = append(errs, s.dropReadLocked())
	}
	for _, seg := range s.segs {
		errs = append(errs, seg.f.Close())
	}
	return errors.Join(errs...)
}

// dropReadLocked rewrites the first segment without the records before the
// read offset.
func (s *spool) dropReadLocked() error {
	seg := s.segs[0]
	tail := make([]byte, seg.size-s.roff)
	if _, err := seg.f.ReadAt(tail, s.roff); err != nil {
		return fmt.Errorf("audit spool: %w", err)
	}
	tmp := seg.path + ".tmp"
	if err := os.WriteFile(tmp, tail, 0o600); err != nil {
		return fmt.Errorf("audit spool: %w", err)
	}
	if err := os.Rename(tmp, seg.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("audit spool: %w", err)
	}
	s.roff = 0
	return nil
}
