// Package logging routes the logs of Writ's dependencies through the one
// *slog.Logger a node is given: hashicorp/raft's hclog.Logger (Hclog) and
// any library that takes a standard *log.Logger or an io.Writer, such as
// hashicorp/memberlist (StdLogger, Writer).
//
// Everything here is safe for concurrent use; nothing holds global state.
package logging

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is below slog.LevelDebug: hclog's Trace maps to it.
const LevelTrace = slog.LevelDebug - 4

// Hclog returns an hclog.Logger that writes to l. name becomes the
// "component" attribute; level is hclog's own threshold (lines below it are
// never formatted), and l's handler filters again by its level.
func Hclog(l *slog.Logger, name string, level hclog.Level) hclog.Logger {
	h := &hcl{l: l, name: name}
	h.level.Store(int32(level))
	return h
}

type hcl struct {
	l       *slog.Logger
	name    string
	implied []any
	level   atomic.Int32
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hcl) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level < hclog.Level(h.level.Load()) {
		return
	}
	lvl := slogLevel(level)
	ctx := context.Background()
	if !h.l.Enabled(ctx, lvl) {
		return
	}
	attrs := make([]any, 0, 2+len(h.implied)+len(args))
	attrs = append(attrs, "component", h.name)
	attrs = append(attrs, h.implied...)
	attrs = append(attrs, args...)
	h.l.Log(ctx, lvl, msg, attrs...)
}

func (h *hcl) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcl) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcl) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcl) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcl) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcl) enabled(l hclog.Level) bool {
	return l >= hclog.Level(h.level.Load()) && h.l.Enabled(context.Background(), slogLevel(l))
}

func (h *hcl) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hcl) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hcl) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hcl) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hcl) IsError() bool { return h.enabled(hclog.Error) }

func (h *hcl) ImpliedArgs() []any { return h.implied }

func (h *hcl) clone(name string, implied []any) *hcl {
	c := &hcl{l: h.l, name: name, implied: implied}
	c.level.Store(h.level.Load())
	return c
}

func (h *hcl) With(args ...any) hclog.Logger {
	implied := append(append([]any(nil), h.implied...), args...)
	return h.clone(h.name, implied)
}

func (h *hcl) Name() string { return h.name }

func (h *hcl) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.clone(name, h.implied)
}

func (h *hcl) ResetNamed(name string) hclog.Logger { return h.clone(name, h.implied) }

func (h *hcl) SetLevel(level hclog.Level) { h.level.Store(int32(level)) }
func (h *hcl) GetLevel() hclog.Level      { return hclog.Level(h.level.Load()) }

func (h *hcl) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcl) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineWriter{l: h.l, name: h.name}
}

// StdLogger returns a *log.Logger whose lines go to l, for libraries that
// take one (memberlist.Config.Logger). A leading "[DEBUG]", "[INFO]",
// "[WARN]" or "[ERR]"/"[ERROR]" tag (memberlist's and raft's standard-log
// convention) sets the level and is stripped; untagged lines are Info.
func StdLogger(l *slog.Logger, name string) *log.Logger {
	return log.New(Writer(l, name), "", 0)
}

// Writer is StdLogger's io.Writer: each line written becomes one record.
func Writer(l *slog.Logger, name string) io.Writer { return &lineWriter{l: l, name: name} }

type lineWriter struct {
	l    *slog.Logger
	name string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	for line := range bytes.SplitSeq(p, []byte{'\n'}) {
		s := strings.TrimSpace(string(line))
		if s == "" {
			continue
		}
		lvl, msg := parseTag(s)
		w.l.Log(context.Background(), lvl, msg, "component", w.name)
	}
	return len(p), nil
}

var tags = []struct {
	tag string
	lvl slog.Level
}{
	{"[TRACE]", LevelTrace},
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

func parseTag(s string) (slog.Level, string) {
	// Skip a standard-log timestamp if the library added one itself.
	if i := strings.IndexByte(s, '['); i > 0 && i < 32 {
		s = s[i:]
	}
	for _, t := range tags {
		if rest, ok := strings.CutPrefix(s, t.tag); ok {
			return t.lvl, strings.TrimSpace(rest)
		}
	}
	return slog.LevelInfo, s
}
