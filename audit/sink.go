package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Sink is where one stream's chained lines go. A Sink is used by one
// stream writer goroutine at a time; Write gets whole lines.
type Sink interface {
	// Write appends whole lines. On error nothing of p may remain: a sink
	// that wrote part of p removes it (or the stream's chain would break).
	Write(p []byte) error
	// Sync makes everything written durable per the sink's mode.
	Sync() error
	// Tail returns the last complete line written before this process
	// started (to continue the chain), or nil.
	Tail() []byte
	Close() error
	// Describe names the sink for logs and config output.
	Describe() string
}

// fileSink appends to a file, rotating it past a size. Rotation renames the
// file to <path>.<UTC time> and opens a new one; the chain continues across
// files (the new file's first record links to the old file's last).
type fileSink struct {
	path   string
	fsync  bool
	rotate int64
	keep   int
	now    func() time.Time

	f    *os.File
	size int64
	tail []byte
}

func openFileSink(path string, fsync bool, rotate int64, keep int, now func() time.Time) (*fileSink, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	s := &fileSink{path: path, fsync: fsync, rotate: rotate, keep: keep, now: now}
	if err := s.open(); err != nil {
		return nil, err
	}
	tail, err := s.recoverTail()
	if err != nil {
		_ = s.f.Close()
		return nil, err
	}
	s.tail = tail
	return s, nil
}

func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit file: %w", err)
	}
	s.f, s.size = f, st.Size()
	return nil
}

// recoverTail finds the last complete line, in the current file or else the
// newest rotated one, and cuts off a partial line a crash left behind.
func (s *fileSink) recoverTail() ([]byte, error) {
	last, complete, err := lastLine(s.f, s.size)
	if err != nil {
		return nil, err
	}
	if complete < s.size {
		if err := s.f.Truncate(complete); err != nil {
			return nil, fmt.Errorf("audit file: cut partial line: %w", err)
		}
		s.size = complete
	}
	if last != nil {
		return last, nil
	}
	rotated := s.rotated()
	if len(rotated) == 0 {
		return nil, nil
	}
	f, err := os.Open(rotated[len(rotated)-1])
	if err != nil {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	last, _, err = lastLine(f, st.Size())
	return last, err
}

// lastLine returns the last newline-terminated line of f and the size up to
// and including its newline.
func lastLine(f *os.File, size int64) ([]byte, int64, error) {
	const window = 1 << 20
	start := max(0, size-window)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("audit file: read tail: %w", err)
	}
	end := bytes.LastIndexByte(buf, '\n')
	if end < 0 {
		return nil, start, nil
	}
	complete := start + int64(end) + 1
	begin := bytes.LastIndexByte(buf[:end], '\n') + 1
	if begin == 0 && start > 0 {
		return nil, complete, fmt.Errorf("audit file: last line longer than %d bytes", window)
	}
	return slices.Clone(buf[begin:end]), complete, nil
}

func (s *fileSink) rotated() []string {
	matches, _ := filepath.Glob(s.path + ".*")
	slices.Sort(matches) // names embed a sortable UTC time
	return matches
}

func (s *fileSink) Write(p []byte) error {
	if s.rotate > 0 && s.size > 0 && s.size+int64(len(p)) > s.rotate {
		if err := s.rotateNow(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(p)
	if err != nil {
		if n > 0 {
			_ = s.f.Truncate(s.size)
		}
		return fmt.Errorf("audit file %s: %w", s.path, err)
	}
	s.size += int64(n)
	return nil
}

func (s *fileSink) rotateNow() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit file %s: sync before rotation: %w", s.path, err)
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("audit file %s: %w", s.path, err)
	}
	name := s.path + "." + s.now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(s.path, name); err != nil {
		_ = s.open()
		return fmt.Errorf("audit file %s: rotate: %w", s.path, err)
	}
	if err := s.open(); err != nil {
		return err
	}
	if old := s.rotated(); s.keep > 0 && len(old) > s.keep {
		for _, p := range old[:len(old)-s.keep] {
			_ = os.Remove(p)
		}
	}
	return nil
}

func (s *fileSink) Sync() error {
	if !s.fsync {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit file %s: fsync: %w", s.path, err)
	}
	return nil
}

func (s *fileSink) Tail() []byte     { return s.tail }
func (s *fileSink) Close() error     { return errors.Join(s.f.Sync(), s.f.Close()) }
func (s *fileSink) Describe() string { return "file " + s.path }

// writerSink writes to a shared writer (stdout). Several streams may share
// one: lines are written whole under the writer's lock. It has no memory of
// earlier runs, so its chain starts afresh with each process (seq 1).
type writerSink struct {
	w    *lockedWriter
	name string
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *writerSink) Write(p []byte) error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	_, err := s.w.w.Write(p)
	return err
}

func (s *writerSink) Sync() error      { return nil }
func (s *writerSink) Tail() []byte     { return nil }
func (s *writerSink) Close() error     { return nil }
func (s *writerSink) Describe() string { return s.name }

// OpenFileSink opens the file sink a stream's config describes at path (for
// Deps.OpenSink hooks that wrap the real sink).
func OpenFileSink(sc *StreamConfig, path string) (Sink, error) {
	return openFileSink(path, sc.Durability == DurabilityFsync, sc.RotateBytes, sc.KeepFiles, time.Now)
}
