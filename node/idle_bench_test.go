package node_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/writ-dev/writ/node/nodetest"
)

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleCPU: the CPU an idle 3-node in-process cluster burns (all
// three nodes: heartbeats, CommitTimeout appends, the freshness ticker), per
// Raft CommitTimeout. Each op is one second of idling; cpu-% is of one core.
// Run with -benchtime 3x.
func BenchmarkIdleCPU(b *testing.B) {
	for _, ct := range []time.Duration{50 * time.Millisecond, 20 * time.Millisecond, 5 * time.Millisecond, 2 * time.Millisecond, time.Millisecond} {
		b.Run(fmt.Sprintf("commit-timeout=%s", ct), func(b *testing.B) {
			c := nodetest.New(b, 3, nodetest.Options{CommitTimeout: ct})
			setup(b, c)
			var cpu, wall time.Duration
			for b.Loop() {
				c0, w0 := cpuTime(b), time.Now()
				waitFor(time.Second)
				cpu += cpuTime(b) - c0
				wall += time.Since(w0)
			}
			b.ReportMetric(100*float64(cpu)/float64(wall), "cpu-%")
		})
	}
}
