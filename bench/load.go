package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Op is one unit of work for a worker. It returns how many operations it
// performed (a BatchAuthorize call counts its decisions) and an error.
// Ops must honour ctx.
type Op func(ctx context.Context, worker int) (int, error)

// Load says how hard and how long to drive an Op.
type Load struct {
	// Duration of the measured period.
	Duration time.Duration
	// Warmup runs the load before measuring; nothing from it is recorded.
	Warmup time.Duration
	// Concurrency: in a closed loop the number of workers, each sending its
	// next call when the previous one returns; in an open loop the most
	// calls in flight at once.
	Concurrency int
	// Rate > 0 selects an open loop: calls are scheduled at 1/Rate
	// intervals whatever the answers, and latency is measured from each
	// call's intended send time, so a stall shows in the percentiles instead
	// of silently lowering the offered load (no coordinated omission).
	Rate float64
	// Interval is the bucket of the throughput series (default 1s).
	Interval time.Duration
	// Progress, if set, is called about every 200 ms with the elapsed time
	// (warmup included) and the operations counted so far.
	Progress func(elapsed, total time.Duration, ops int64)
	// CPU, if set, is sampled when the measured period starts and when it
	// ends: the Measurement then holds the CPU used in between.
	CPU CPUSampler
}

func (l *Load) validate() error {
	if l.Duration <= 0 {
		return fmt.Errorf("%w: duration must be positive", ErrConfig)
	}
	if l.Concurrency < 1 {
		return fmt.Errorf("%w: concurrency must be at least 1", ErrConfig)
	}
	if l.Rate < 0 || l.Warmup < 0 {
		return fmt.Errorf("%w: rate and warmup must not be negative", ErrConfig)
	}
	if l.Interval <= 0 {
		l.Interval = time.Second
	}
	return nil
}

// Mode names the loop: "closed" or "open".
func (l Load) Mode() string {
	if l.Rate > 0 {
		return "open"
	}
	return "closed"
}

// Measurement is what one run of a Load produced.
type Measurement struct {
	// Ops counts operations (Op's n) that succeeded in the measured period;
	// Calls counts Op invocations; Errors counts failed invocations.
	Ops, Calls, Errors int64
	Elapsed            time.Duration
	// Latency of successful calls (per call, not per operation).
	Latency *Histogram
	// Series is operations per second in each Interval of the measured period.
	Series []float64
	// ErrorSamples counts up to 8 distinct error messages.
	ErrorSamples map[string]int64
	// ClientCPU and ServerCPU are the CPU time the load generator and the
	// servers used in the measured period; negative when not sampled.
	ClientCPU, ServerCPU time.Duration
	// AuditDropped counts the audit records the nodes dropped during the
	// run, warmup included (their writ_audit_dropped_total); negative when
	// not read (Run leaves it so: the scenario reads the nodes).
	AuditDropped int64
}

// OpsPerSecond is the measured throughput.
func (m *Measurement) OpsPerSecond() float64 {
	if m.Elapsed <= 0 {
		return 0
	}
	return float64(m.Ops) / m.Elapsed.Seconds()
}

// intendedTime is the open loop's schedule: call i is due at start + i/rate.
func intendedTime(start time.Time, rate float64, i int64) time.Time {
	return start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
}

// recorder is one worker's private tally, merged at the end.
type recorder struct {
	hist               *Histogram
	ops, calls, errors int64
	errs               map[string]int64
}

// Run drives op according to l until the measured period ends or ctx is
// cancelled, and returns what was measured.
func Run(ctx context.Context, l Load, op Op) (*Measurement, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	measureFrom := start.Add(l.Warmup)
	end := measureFrom.Add(l.Duration)
	buckets := int((l.Duration + l.Interval - 1) / l.Interval)
	series := make([]atomic.Int64, buckets)
	var progressOps atomic.Int64

	recs := make([]*recorder, l.Concurrency)
	for i := range recs {
		recs[i] = &recorder{hist: NewHistogram()}
	}
	// account records one finished call that was due (or sent) at sent.
	account := func(r *recorder, sent, done time.Time, n int, err error) {
		progressOps.Add(int64(n))
		if sent.Before(measureFrom) || done.After(end) {
			return
		}
		if err != nil && ctx.Err() != nil {
			return // cut short by the end of the run: neither a call nor a failure
		}
		r.calls++
		if err != nil {
			r.errors++
			if r.errs == nil {
				r.errs = map[string]int64{}
			}
			if _, ok := r.errs[err.Error()]; ok || len(r.errs) < 8 {
				r.errs[err.Error()]++
			}
			return
		}
		r.ops += int64(n)
		r.hist.Record(done.Sub(sent))
		if b := int(done.Sub(measureFrom) / l.Interval); b >= 0 && b < buckets {
			series[b].Add(int64(n))
		}
	}

	var wg sync.WaitGroup
	if l.Rate > 0 {
		due := make(chan time.Time, l.Concurrency*4)
		for w := range l.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for sent := range due {
					n, err := op(ctx, w)
					account(recs[w], sent, time.Now(), n, err)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(due)
			var i int64
			for {
				now := time.Now()
				for t := intendedTime(start, l.Rate, i); !t.After(now); t = intendedTime(start, l.Rate, i) {
					if !t.Before(end) {
						return
					}
					select {
					case due <- t: // blocks while every worker is busy: the wait counts as latency
					case <-ctx.Done():
						return
					}
					i++
				}
				wait := time.Until(intendedTime(start, l.Rate, i))
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return
				}
			}
		}()
	} else {
		for w := range l.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					sent := time.Now()
					if !sent.Before(end) || ctx.Err() != nil {
						return
					}
					n, err := op(ctx, w)
					account(recs[w], sent, time.Now(), n, err)
				}
			}()
		}
	}
	stopTimer := time.AfterFunc(time.Until(end), cancel) // cut calls still running at the end
	defer stopTimer.Stop()
	cpu := sampleCPU(ctx, l.CPU, measureFrom, end)
	if l.Progress != nil {
		tick := time.NewTicker(200 * time.Millisecond)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
	loop:
		for {
			select {
			case <-tick.C:
				l.Progress(time.Since(start), l.Warmup+l.Duration, progressOps.Load())
			case <-done:
				break loop
			}
		}
		tick.Stop()
		l.Progress(l.Warmup+l.Duration, l.Warmup+l.Duration, progressOps.Load())
	} else {
		wg.Wait()
	}
	m := &Measurement{Latency: NewHistogram(), Elapsed: min(time.Since(measureFrom), l.Duration), ClientCPU: -1, ServerCPU: -1, AuditDropped: -1}
	if c, ok := <-cpu; ok {
		m.ClientCPU, m.ServerCPU = c[0], c[1]
	}
	for _, r := range recs {
		m.Latency.Merge(r.hist)
		m.Ops += r.ops
		m.Calls += r.calls
		m.Errors += r.errors
		for k, v := range r.errs {
			if m.ErrorSamples == nil {
				m.ErrorSamples = map[string]int64{}
			}
			if _, ok := m.ErrorSamples[k]; ok || len(m.ErrorSamples) < 8 {
				m.ErrorSamples[k] += v
			}
		}
	}
	for i := range series {
		m.Series = append(m.Series, float64(series[i].Load())/l.Interval.Seconds())
	}
	return m, nil
}

// sampleCPU samples s at from and at end; the channel yields the CPU used
// in between (client, servers), or closes empty when s is nil, a sample
// failed or ctx ended first.
func sampleCPU(ctx context.Context, s CPUSampler, from, end time.Time) <-chan [2]time.Duration {
	out := make(chan [2]time.Duration, 1)
	if s == nil {
		close(out)
		return out
	}
	at := func(t time.Time) (c, srv time.Duration, ok bool) {
		timer := time.NewTimer(time.Until(t))
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			if time.Now().Before(t) {
				return 0, 0, false
			}
		}
		c, srv, err := s()
		return c, srv, err == nil
	}
	go func() {
		defer close(out)
		c0, s0, ok := at(from)
		if !ok {
			return
		}
		c1, s1, ok := at(end)
		if !ok {
			return
		}
		d := [2]time.Duration{c1 - c0, -1}
		if s0 >= 0 && s1 >= 0 {
			d[1] = s1 - s0
		}
		out <- d
	}()
	return out
}
