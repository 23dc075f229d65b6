package audit

import (
	"syscall"
	"testing"
	"time"
)

func benchEvent() *Event {
	return &Event{
		Type: TypeUse, Method: "Authorize", Actor: Actor{ID: "ci/deploy-api", Kind: "ci_job", Owner: "team-platform", Role: "deploy-api"},
		Action: "deploy", Resource: &Resource{Type: "Deployment", ID: "api"}, Decision: Allow, DecisionID: "d_abcdefghijklmnopqrstuvwxyz",
		LeaseID: "l_abcdefghijklmnopqrstuvwxyz", PolicySet: "prod", PolicyVersion: 3, Policies: []string{"deploy-with-ticket"},
		Context:      map[string]any{"ticket": "CHG-1", "auth": map[string]any{"method": "credential", "lease_id": "l_abcdefghijklmnopqrstuvwxyz"}},
		AppliedIndex: 12345, Healthy: true,
	}
}

// BenchmarkRecordPipeline measures the whole spooled path per record, on
// the caller and in the background: Record, JSON encoding, the spool,
// chaining, the file write and its fsync per batch. It waits until every
// record is on disk, so ns/op is the pipeline's sustained cost.
func BenchmarkRecordPipeline(b *testing.B) {
	for _, durability := range []string{DurabilityFsync, DurabilityWrite} {
		b.Run("durability="+durability, func(b *testing.B) {
			cfg := Config{Dir: b.TempDir(), QueueLen: 1 << 16, SpoolMaxBytes: 1 << 30,
				Streams: map[Stream]*StreamConfig{StreamWorkload: {Durability: durability}}}
			l, err := Open(cfg, Deps{Node: "n1"})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			s := l.streams[1]
			start := s.seq
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				l.Record(benchEvent())
			}
			want := start + uint64(b.N)
			deadline := time.Now().Add(time.Minute)
			for {
				s.headMu.Lock()
				seq := s.headSeq
				s.headMu.Unlock()
				if seq >= want || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond) // polling the writer's progress
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			if d := s.dropped[0].Load() + s.dropped[1].Load(); d > 0 {
				b.Fatalf("%d records dropped", d)
			}
		})
	}
}

// BenchmarkRecordCaller is what a request pays on its own goroutine: the
// stream lookup, the filter check and one channel send.
func BenchmarkRecordCaller(b *testing.B) {
	cfg := Config{Dir: b.TempDir(), QueueLen: 1 << 20, SpoolMaxBytes: 1 << 30}
	l, err := Open(cfg, Deps{Node: "n1"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		e := *ev
		l.Record(&e)
	}
}

// processCPU is this process's user+system CPU time in nanoseconds: the
// pipeline's goroutines included, other processes' load excluded.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
