package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"
)

func records(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range bytes.SplitSeq(bytes.TrimSpace(buf.Bytes()), []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("bad json %q: %v", line, err)
		}
		delete(m, "time")
		out = append(out, m)
	}
	return out
}

func TestHclogRoutesThroughSlog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := Hclog(l, "raft", hclog.Debug)
	h.Trace("dropped: below hclog level")
	h.Info("entering follower state", "term", 3)
	h.Named("net").With("peer", "n2").Warn("slow", "ms", 12)
	if h.IsTrace() || !h.IsDebug() {
		t.Errorf("IsTrace=%v IsDebug=%v, want false true", h.IsTrace(), h.IsDebug())
	}
	h.SetLevel(hclog.Error)
	h.Warn("dropped: level raised")
	want := []map[string]any{
		{"level": "INFO", "msg": "entering follower state", "component": "raft", "term": 3.0},
		{"level": "WARN", "msg": "slow", "component": "raft.net", "peer": "n2", "ms": 12.0},
	}
	if d := cmp.Diff(want, records(t, &buf)); d != "" {
		t.Errorf("records (-want +got):\n%s", d)
	}
}

func TestStdLoggerParsesTags(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	std := StdLogger(l, "memberlist")
	std.Print("[DEBUG] memberlist: Stream connection from=127.0.0.1:1234")
	std.Print("[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed")
	std.Print("[ERR] memberlist: Failed to send ping")
	std.Print("untagged line")
	want := []map[string]any{
		{"level": "DEBUG", "msg": "memberlist: Stream connection from=127.0.0.1:1234", "component": "memberlist"},
		{"level": "WARN", "msg": "memberlist: Was able to connect to n2 over TCP but UDP probes failed", "component": "memberlist"},
		{"level": "ERROR", "msg": "memberlist: Failed to send ping", "component": "memberlist"},
		{"level": "INFO", "msg": "untagged line", "component": "memberlist"},
	}
	if d := cmp.Diff(want, records(t, &buf)); d != "" {
		t.Errorf("records (-want +got):\n%s", d)
	}
}
