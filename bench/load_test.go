package bench

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestIntendedTime(t *testing.T) {
	start := time.Unix(1000, 0)
	cases := []struct {
		name string
		rate float64
		i    int64
		want time.Duration
	}{
		{"first call at start", 100, 0, 0},
		{"100/s: 10 ms apart", 100, 1, 10 * time.Millisecond},
		{"100/s: call 250", 100, 250, 2500 * time.Millisecond},
		{"fractional rate", 2.5, 3, 1200 * time.Millisecond},
		{"fast rate", 50000, 50000, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := intendedTime(start, tc.rate, tc.i).Sub(start); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLoadValidate(t *testing.T) {
	cases := []struct {
		name string
		l    Load
	}{
		{"no duration", Load{Concurrency: 1}},
		{"no concurrency", Load{Duration: time.Second}},
		{"negative rate", Load{Duration: time.Second, Concurrency: 1, Rate: -1}},
		{"negative warmup", Load{Duration: time.Second, Concurrency: 1, Warmup: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tc.l, nil); !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want ErrConfig", err)
			}
		})
	}
}

// TestClosedLoopCounts: every call is counted once, n per call, errors apart.
func TestClosedLoopCounts(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	m, err := Run(context.Background(), Load{Duration: 200 * time.Millisecond, Concurrency: 4}, func(ctx context.Context, w int) (int, error) {
		if calls.Add(1)%10 == 0 {
			return 0, boom
		}
		return 10, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Calls == 0 || m.Calls > calls.Load() {
		t.Fatalf("calls %d of %d made", m.Calls, calls.Load())
	}
	if ok := m.Calls - m.Errors; m.Ops != 10*ok {
		t.Errorf("ops %d, want 10 × %d successful calls", m.Ops, ok)
	}
	if m.Errors == 0 || m.ErrorSamples["boom"] != m.Errors {
		t.Errorf("errors %d, samples %v", m.Errors, m.ErrorSamples)
	}
	if m.Latency.Count() != m.Calls-m.Errors {
		t.Errorf("latency count %d, want %d", m.Latency.Count(), m.Calls-m.Errors)
	}
	if len(m.Series) != 1 {
		t.Errorf("series %v, want one 1 s bucket", m.Series)
	}
}

// TestOpenLoopSchedule: an open loop never sends more than rate × duration.
func TestOpenLoopSchedule(t *testing.T) {
	var calls atomic.Int64
	m, err := Run(context.Background(), Load{Duration: 500 * time.Millisecond, Concurrency: 8, Rate: 200}, func(ctx context.Context, w int) (int, error) {
		calls.Add(1)
		return 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got > 100 || got == 0 {
		t.Fatalf("%d calls at 200/s for 0.5 s, want at most 100", got)
	}
	if m.Calls > 100 {
		t.Fatalf("counted %d calls", m.Calls)
	}
}

// TestOpenLoopNoCoordinatedOmission: one call stalls 300 ms with one worker.
// The open loop charges the calls that were due during the stall with the
// time they waited; a closed loop only sees one slow call.
func TestOpenLoopNoCoordinatedOmission(t *testing.T) {
	stallFirst := func() Op {
		var first atomic.Bool
		return func(ctx context.Context, w int) (int, error) {
			if first.CompareAndSwap(false, true) {
				select {
				case <-time.After(300 * time.Millisecond):
				case <-ctx.Done():
				}
			}
			return 1, nil
		}
	}
	open, err := Run(context.Background(), Load{Duration: time.Second, Concurrency: 1, Rate: 100}, stallFirst())
	if err != nil {
		t.Fatal(err)
	}
	// About 30 of 100 calls were due during the stall, waiting 10..300 ms.
	if p75 := open.Latency.Quantile(75); p75 < 50 {
		t.Errorf("open loop p75 %.2f ms: the stall was omitted", p75)
	}
	closed, err := Run(context.Background(), Load{Duration: time.Second, Concurrency: 1}, stallFirst())
	if err != nil {
		t.Fatal(err)
	}
	if p75 := closed.Latency.Quantile(75); p75 >= 50 {
		t.Errorf("closed loop p75 %.2f ms: only one call was slow", p75)
	}
}

func TestWarmupNotRecorded(t *testing.T) {
	start := time.Now()
	var early atomic.Int64
	m, err := Run(context.Background(), Load{Duration: 200 * time.Millisecond, Warmup: 200 * time.Millisecond, Concurrency: 2}, func(ctx context.Context, w int) (int, error) {
		if time.Since(start) < 150*time.Millisecond {
			early.Add(1)
			return 0, errors.New("warmup error")
		}
		return 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if early.Load() == 0 {
		t.Skip("the machine was too slow to call during the warmup")
	}
	if m.Errors != 0 {
		t.Errorf("%d warmup errors recorded", m.Errors)
	}
}
