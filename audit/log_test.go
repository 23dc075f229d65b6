package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
	t.Fatalf("%s: %v", what, err)
}

func testConfig(dir string) Config {
	return Config{Dir: dir, DurableTimeout: 300 * time.Millisecond, CheckpointInterval: 50 * time.Millisecond}
}

func readRecords(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for line := range bytes.SplitSeq(bytes.TrimSpace(b), []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func verifyFile(t *testing.T, path string) []ChainReport {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Verify(f, VerifyOptions{})
	if err != nil {
		t.Fatalf("verify %s: %v", path, err)
	}
	return rep
}

func workload(id string) Actor { return Actor{ID: id, Kind: "workload", Owner: "team"} }

func TestStreamsChainsAndRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() *Log {
		l, err := Open(testConfig(dir), Deps{Node: "n1", Key: func() []byte { return []byte("k") }})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	ctx := context.Background()
	if err := l.Durable(ctx, &Event{Type: TypeAdmin, Method: "PutRole", Actor: Actor{ID: "admin:x", Kind: "admin", Human: true}, Target: "role/a"}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		l.Record(&Event{Type: TypeUse, Method: "Authorize", Actor: workload("ci/a"), Decision: Allow, DecisionID: fmt.Sprint("d", i)})
	}
	l.Record(&Event{Type: TypeUse, Method: "Verify", Actor: Actor{ID: "agent/x", Kind: "agent"}, Decision: Allow})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open() // a restart continues each chain
	l.Record(&Event{Type: TypeUse, Method: "Authorize", Actor: workload("ci/a"), Decision: Deny})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	type sum struct {
		Stream  Stream
		Records int
		Anchor  string
	}
	for _, tc := range []struct {
		stream Stream
		want   int
	}{
		{StreamHuman, 3},     // start, admin, start
		{StreamWorkload, 13}, // start, 10 uses, start, 1 use
		{StreamAgent, 3},     // start, use, start
	} {
		rep := verifyFile(t, filepath.Join(dir, string(tc.stream)+".log"))
		got := []sum{{rep[0].Stream, rep[0].Records, rep[0].Anchor}}
		if d := cmp.Diff([]sum{{tc.stream, tc.want, ""}}, got); d != "" {
			t.Errorf("%s chain (-want +got):\n%s", tc.stream, d)
		}
	}
	recs := readRecords(t, filepath.Join(dir, "workload.log"))
	if recs[1]["node"] != "n1" || recs[1]["method"] != "Authorize" || recs[1]["decision"] != "allow" {
		t.Errorf("record 2 = %v", recs[1])
	}
}

func TestRotationKeepsTheChain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.Streams = map[Stream]*StreamConfig{StreamWorkload: {RotateBytes: 2048, KeepFiles: 100}}
	l, err := Open(cfg, Deps{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		// Durable writes one record at a time, so rotation has many chances.
		if err := l.Durable(context.Background(), &Event{Type: TypeUse, Method: "Authorize", Actor: workload("ci/a"), DecisionID: fmt.Sprint("d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "workload.log.*"))
	if len(files) < 2 {
		t.Fatalf("want rotated files, got %v", files)
	}
	files = append(files, filepath.Join(dir, "workload.log"))
	var all bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	rep, err := Verify(&all, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep[0].Records != 61 || rep[0].First != 1 {
		t.Errorf("report %+v, want 61 records from seq 1", rep[0])
	}
	// The newest file alone verifies too, anchored on the previous file.
	last := verifyFile(t, files[len(files)-1])
	if last[0].Anchor == "" || last[0].First == 1 {
		t.Errorf("newest file report %+v: want an anchor into the previous file", last[0])
	}
}

func TestFiltersSampleAndCount(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.Streams = map[Stream]*StreamConfig{StreamWorkload: {Filters: []Filter{{
		Name: "healthy-verify", Types: []Type{TypeUse}, Methods: []string{"Verify"}, Decision: Allow, HealthyOnly: true, SampleRate: 0.1,
	}}}}
	reg := prometheus.NewRegistry()
	l, err := Open(cfg, Deps{Node: "n1", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		l.Record(&Event{Type: TypeUse, Method: "Verify", Actor: workload("ci/a"), Decision: Allow, Healthy: true})
	}
	// Not matched: inactive credentials, and Authorize.
	l.Record(&Event{Type: TypeUse, Method: "Verify", Actor: workload("ci/a"), Decision: Deny})
	l.Record(&Event{Type: TypeUse, Method: "Authorize", Actor: workload("ci/a"), Decision: Allow, Healthy: true})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var filtered uint64
	for _, r := range readRecords(t, filepath.Join(dir, "workload.log")) {
		counts[fmt.Sprint(r["type"], "/", r["method"], "/", r["decision"])]++
		if r["type"] == string(TypeFiltered) {
			filtered += uint64(r["filtered"].(map[string]any)["healthy-verify"].(float64))
		}
	}
	want := map[string]int{
		"start/<nil>/<nil>":    1,
		"use/Verify/allow":     10,
		"use/Verify/deny":      1,
		"use/Authorize/allow":  1,
		"filtered/<nil>/<nil>": counts["filtered/<nil>/<nil>"],
	}
	if d := cmp.Diff(want, counts); d != "" || filtered != 90 {
		t.Errorf("records by type (-want +got):\n%s\nfiltered count %d, want 90", d, filtered)
	}
}

func TestConfigRejects(t *testing.T) {
	t.Parallel()
	for name, yml := range map[string]string{
		"unknown key":          "dir: /x\nbogus: 1\n",
		"unknown stream":       "dir: /x\nstreams:\n  robots: {}\n",
		"stdout fsync":         "dir: /x\nstreams:\n  human: {sink: stdout, durability: fsync}\n",
		"filter on issuance":   "dir: /x\nstreams:\n  workload:\n    filters: [{name: f, types: [issue], sample_rate: 0}]\n",
		"filter without types": "dir: /x\nstreams:\n  workload:\n    filters: [{name: f, sample_rate: 0.5}]\n",
		"rate above one":       "dir: /x\nstreams:\n  workload:\n    filters: [{name: f, types: [use], sample_rate: 2}]\n",
		"same file twice":      "dir: /x\nstreams:\n  human: {path: a.log}\n  agent: {path: a.log}\n",
		"bad sink":             "dir: /x\nstreams:\n  human: {sink: kafka}\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseConfig([]byte(yml))
			if err == nil {
				_, err = c.Effective()
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("err = %v, want ErrConfig", err)
			}
		})
	}
	c, err := ParseConfig([]byte("dir: /x\ndurable_timeout: 5s\nstreams:\n  human: {sink: stdout}\n"))
	if err != nil {
		t.Fatal(err)
	}
	eff, err := c.Effective()
	if err != nil {
		t.Fatal(err)
	}
	if eff.DurableTimeout != 5*time.Second || eff.Streams[StreamHuman].Durability != DurabilityWrite || eff.Streams[StreamAgent].Path != "agent.log" {
		t.Errorf("effective config:\n%s", eff.YAML())
	}
}

// wrapWorkloadSink opens file sinks, with the workload stream's wrapped.
func wrapWorkloadSink(wrap func(Sink) Sink) Deps {
	return Deps{Node: "n1", OpenSink: func(stream Stream, sc *StreamConfig, path string) (Sink, error) {
		fs, err := openFileSink(path, true, 0, 0, time.Now)
		if err != nil || stream != StreamWorkload {
			return fs, err
		}
		return wrap(fs), nil
	}}
}

// flakySink is a file sink that can be told to fail or to block.
type flakySink struct {
	Sink
	mu      sync.Mutex
	mode    string // "", "fail", "block"
	release chan struct{}
	blocked atomic.Int64 // writes that have blocked so far
}

func (s *flakySink) set(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode == "block" && mode != "block" {
		close(s.release)
	}
	if mode == "block" {
		s.release = make(chan struct{})
	}
	s.mode = mode
}

func (s *flakySink) Write(p []byte) error {
	s.mu.Lock()
	mode, release := s.mode, s.release
	s.mu.Unlock()
	switch mode {
	case "fail":
		return errors.New("disk on fire")
	case "block":
		s.blocked.Add(1)
		<-release
	}
	return s.Sink.Write(p)
}

func TestFailingAndStuckSinks(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"fail", "block"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := testConfig(dir)
			cfg.SpoolMaxBytes = 64 << 10 // small, so the spool fills
			cfg.QueueLen = 64
			var flaky *flakySink
			deps := wrapWorkloadSink(func(fs Sink) Sink {
				flaky = &flakySink{Sink: fs}
				return flaky
			})
			l, err := Open(cfg, deps)
			if err != nil {
				t.Fatal(err)
			}
			flaky.set(mode)
			// A must record fails closed, within the durable timeout.
			err = l.Durable(context.Background(), &Event{Type: TypeIssue, Phase: PhaseIntent, Actor: workload("ci/a"), LeaseID: "l_1"})
			if !errors.Is(err, ErrNotDurable) {
				t.Fatalf("Durable with a %s sink: %v, want ErrNotDurable", mode, err)
			}
			// Another stream is not affected.
			if err := l.Durable(context.Background(), &Event{Type: TypeAdmin, Actor: Actor{Kind: "admin", Human: true}}); err != nil {
				t.Fatalf("human stream: %v", err)
			}
			// Decisions keep flowing: Record never blocks, the spool fills,
			// and what does not fit is counted.
			const n = 2000
			for i := range n {
				l.Record(&Event{Type: TypeUse, Method: "Authorize", Actor: workload("ci/a"), Decision: Allow, DecisionID: fmt.Sprintf("d_%06d", i)})
			}
			eventually(t, "records dropped once the spool is full", func() error {
				if d := l.streams[1].dropped[0].Load() + l.streams[1].dropped[1].Load(); d == 0 {
					return errors.New("nothing dropped yet")
				}
				return nil
			})
			flaky.set("")
			eventually(t, "spool drained after recovery", func() error {
				if recs, _ := l.streams[1].spool.depth(); recs > 0 {
					return fmt.Errorf("%d records still spooled", recs)
				}
				return nil
			})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "workload.log")
			rep := verifyFile(t, path)
			uses := 0
			for _, r := range readRecords(t, path) {
				if r["type"] == string(TypeUse) {
					uses++
				}
				// A failing sink never takes the intent. A stuck one may
				// finish writing it after the caller gave up: the caller
				// still made no change, and says so in a result record
				// (rpc), so an intent alone never proves a change.
				if r["type"] == string(TypeIssue) && mode == "fail" {
					t.Errorf("an issue record that failed closed was written: %v", r)
				}
			}
			if uses == 0 || uses == n {
				t.Errorf("%d of %d uses written: want some spooled and some dropped", uses, n)
			}
			if got := uint64(uses) + rep[0].Gaps; got != n {
				t.Errorf("%d uses written + %d in gap records = %d, want %d: every loss is accounted for", uses, rep[0].Gaps, got, n)
			}
		})
	}
}

func TestHashIsKeyedAndStable(t *testing.T) {
	t.Parallel()
	l, err := Open(testConfig(t.TempDir()), Deps{Node: "n1", Key: func() []byte { return []byte("cluster key") }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := l.Hash("s3cret")
	if !strings.HasPrefix(h, HashPrefix) || strings.Contains(h, "s3cret") || h != HMAC(DeriveKey([]byte("cluster key")), "s3cret") || h == HMAC([]byte("cluster key"), "s3cret") {
		t.Errorf("Hash = %q", h)
	}
}

// TestStdoutSinkRestartsItsChain: stdout streams share one writer, each
// keeps its own chain, and a second process run starts the chain again
// (verify accepts that only with AllowRestarts).
func TestStdoutSinkRestartsItsChain(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cfg := testConfig(t.TempDir())
	cfg.Streams = map[Stream]*StreamConfig{}
	for _, s := range Streams {
		cfg.Streams[s] = &StreamConfig{Sink: SinkStdout}
	}
	for range 2 {
		l, err := Open(cfg, Deps{Node: "n1", Stdout: w})
		if err != nil {
			t.Fatal(err)
		}
		l.Record(&Event{Type: TypeUse, Method: "Verify", Actor: workload("ci/a")})
		mustDurable(t, l, &Event{Type: TypeAdmin, Actor: Actor{Kind: "admin", Human: true}})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Verify(bytes.NewReader(out.Bytes()), VerifyOptions{}); !errors.Is(err, ErrTampered) {
		t.Errorf("a restarted chain without AllowRestarts: %v, want ErrTampered", err)
	}
	rep, err := Verify(bytes.NewReader(out.Bytes()), VerifyOptions{AllowRestarts: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != 3 {
		t.Fatalf("%d chains in one stdout, want 3 (one per stream): %+v", len(rep), rep)
	}
	for _, r := range rep {
		if r.Restarted != 1 {
			t.Errorf("%s: %d restarts, want 1", r.Stream, r.Restarted)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func mustDurable(t *testing.T, l *Log, ev *Event) {
	t.Helper()
	if err := l.Durable(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolReplaysAfterRestart: records still spooled when the log closes
// (its sink failing) are written after the next start: at least once,
// never silently lost.
func TestSpoolReplaysAfterRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(dir)
	failing := true
	open := func(stream Stream, sc *StreamConfig, path string) (Sink, error) {
		fs, err := openFileSink(path, true, 0, 0, time.Now)
		if err != nil || stream != StreamWorkload || !failing {
			return fs, err
		}
		f := &flakySink{Sink: fs}
		return f, nil
	}
	l, err := Open(cfg, Deps{Node: "n1", OpenSink: open})
	if err != nil {
		t.Fatal(err)
	}
	l.streams[1].sink.(*flakySink).set("fail")
	for i := range 50 {
		l.Record(&Event{Type: TypeUse, Method: "Authorize", Actor: workload("ci/a"), DecisionID: fmt.Sprintf("d_%02d", i)})
	}
	eventually(t, "the sink refused a batch", func() error {
		if testutil.ToFloat64(l.m.sinkErrors.WithLabelValues(string(StreamWorkload))) == 0 {
			return errors.New("no sink error yet")
		}
		return nil
	})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	failing = false
	l, err = Open(cfg, Deps{Node: "n1", OpenSink: open})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "spool replayed", func() error {
		if recs, _ := l.streams[1].spool.depth(); recs > 0 {
			return fmt.Errorf("%d still spooled", recs)
		}
		return nil
	})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range readRecords(t, filepath.Join(dir, "workload.log")) {
		if id, ok := r["decision_id"].(string); ok {
			seen[id] = true
		}
	}
	for i := range 50 {
		if id := fmt.Sprintf("d_%02d", i); !seen[id] {
			t.Errorf("%s lost", id)
		}
	}
	verifyFile(t, filepath.Join(dir, "workload.log"))
}

// syncCounter counts a sink's Syncs.
type syncCounter struct {
	Sink
	n atomic.Int64
}

func (s *syncCounter) Sync() error {
	s.n.Add(1)
	return s.Sink.Sync()
}

// TestDurableGroupCommit: must records that wait behind a write in progress
// are made durable together, one write and one fsync for the group, and
// each caller learns its own record is durable.
func TestDurableGroupCommit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var flaky *flakySink
	var syncs *syncCounter
	deps := wrapWorkloadSink(func(fs Sink) Sink {
		flaky = &flakySink{Sink: fs}
		syncs = &syncCounter{Sink: flaky}
		return syncs
	})
	l, err := Open(testConfig(dir), deps)
	if err != nil {
		t.Fatal(err)
	}
	const waiting = 40 // under the must queue's 64
	errs := make(chan error, waiting+1)
	durable := func(i int) {
		errs <- l.Durable(context.Background(), &Event{Type: TypeIssue, Phase: PhaseIntent, Actor: workload("ci/a"), LeaseID: fmt.Sprintf("l_%03d", i)})
	}
	flaky.set("block")
	go durable(0) // the writer takes it and blocks in Write
	eventually(t, "the first record's write to block", func() error {
		if flaky.blocked.Load() == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	for i := 1; i <= waiting; i++ {
		go durable(i)
	}
	eventually(t, "the rest queued behind it", func() error {
		if n := len(l.streams[1].must); n != waiting {
			return fmt.Errorf("%d of %d queued", n, waiting)
		}
		return nil
	})
	before := syncs.n.Load()
	flaky.set("")
	for range waiting + 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := syncs.n.Load() - before; n > 2 {
		t.Errorf("%d fsyncs for %d durable records: they were not grouped", n, waiting+1)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "workload.log")
	verifyFile(t, path)
	leases := map[any]bool{}
	for _, r := range readRecords(t, path) {
		if r["type"] == string(TypeIssue) {
			leases[r["lease_id"]] = true
		}
	}
	if len(leases) != waiting+1 {
		t.Errorf("%d intents in the log, want %d", len(leases), waiting+1)
	}
}
