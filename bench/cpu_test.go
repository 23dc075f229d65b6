package bench

import (
	"context"
	"math"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseProcStatCPU(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 250 and 50 ticks in each valid line.
	tail := " S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100 2000000 300"
	cases := []struct {
		name string
		stat string
		want time.Duration
		ok   bool
	}{
		{"plain name", "4242 (writ)" + tail, 3 * time.Second, true},
		{"name with spaces and parens", "4242 (writ (x) y)" + tail, 3 * time.Second, true},
		{"zero", "1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 0 0 0 0 20 0 1 0 5 1 1", 0, true},
		{"no name", "4242 writ" + tail, 0, false},
		{"truncated", "4242 (writ) S 1 2 3", 0, false},
		{"not a number", "4242 (writ) S 1 2 3 4 5 6 7 8 9 10 x 50 0", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStatCPU(tc.stat)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("got %v, %v; want %v, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

// TestProcessCPUReadsServers: a live process's /proc entry parses, and the
// client-only sampler says the servers are unknown.
func TestProcessCPUReadsServers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/stat is Linux's")
	}
	if _, srv, err := ProcessCPU([]int{os.Getpid()})(); err != nil || srv < 0 {
		t.Fatalf("servers %v, %v", srv, err)
	}
	if _, srv, err := ProcessCPU(nil)(); err != nil || srv != -1 {
		t.Fatalf("no servers: got %v, %v; want -1", srv, err)
	}
}

// TestRunSamplesCPU: Run takes the CPU used between the start and the end
// of the measured period, not the warmup's.
func TestRunSamplesCPU(t *testing.T) {
	var calls atomic.Int64
	sampler := func() (time.Duration, time.Duration, error) {
		n := time.Duration(calls.Add(1))
		return n * time.Second, n * 3 * time.Second, nil // 1 s client, 3 s servers per sample
	}
	l := Load{Duration: 200 * time.Millisecond, Warmup: 100 * time.Millisecond, Concurrency: 1, Interval: 100 * time.Millisecond, CPU: sampler}
	m, err := Run(context.Background(), l, func(context.Context, int) (int, error) { return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || m.ClientCPU != time.Second || m.ServerCPU != 3*time.Second {
		t.Fatalf("%d samples, client %v, servers %v; want 2 samples, 1s, 3s", calls.Load(), m.ClientCPU, m.ServerCPU)
	}
	r := fromMeasurements("x", "ops", l, []*Measurement{m})
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*b }
	if want := float64(time.Second.Microseconds()) / float64(m.Ops); !near(r.ClientCPUUsPerOp, want) || !near(r.ServerCPUUsPerOp, 3*want) {
		t.Fatalf("per op: client %v, servers %v; want %v, %v", r.ClientCPUUsPerOp, r.ServerCPUUsPerOp, want, 3*want)
	}
	// Without a sampler nothing is reported.
	l.CPU = nil
	m, err = Run(context.Background(), l, func(context.Context, int) (int, error) { return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	if r := fromMeasurements("x", "ops", l, []*Measurement{m}); m.ClientCPU != -1 || r.ClientCPUUsPerOp != 0 || r.ServerCPUUsPerOp != 0 {
		t.Fatalf("unsampled: %v, %v, %v", m.ClientCPU, r.ClientCPUUsPerOp, r.ServerCPUUsPerOp)
	}
}
