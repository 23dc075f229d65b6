package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// Scenarios lists every scenario `writ bench` knows, in the order "all" runs them.
var Scenarios = []string{
	"authorize", "batch-authorize", "issue", "verify", "renew",
	"revoke-propagation", "mixed", "policy-scale", "lease-scale",
}

// Config is one `writ bench` invocation.
type Config struct {
	Target    *Target
	Scenarios []string
	// Load is the base load every scenario runs with (revoke-propagation
	// runs one revocation at a time: that is what "idle" means).
	Load Load
	// Runs repeats each measurement; figures are medians (default 1).
	Runs int
	// Policies in the bench policy set (default 100).
	Policies int
	// BatchSize is the number of decisions per BatchAuthorize call (default 100).
	BatchSize int
	// PolicyLevels and LeaseLevels are the steps of the scale scenarios.
	PolicyLevels []int
	LeaseLevels  []int
	// ScaleDuration is the measured time per scale step (default Load.Duration/4, at least 3s).
	ScaleDuration time.Duration
	// Peers are measured before the scenarios, with the same load; nil for none.
	Peers  *Peers
	Logger *slog.Logger
	// Progress returns the progress callback for one measurement (nil: none).
	Progress func(label string) func(elapsed, total time.Duration, ops int64)
}

func (c *Config) defaults() error {
	if c.Target == nil {
		return fmt.Errorf("%w: no target", ErrConfig)
	}
	if c.Runs <= 0 {
		c.Runs = 1
	}
	if c.Policies <= 0 {
		c.Policies = 100
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if len(c.PolicyLevels) == 0 {
		c.PolicyLevels = []int{10, 100, 1000, 10000}
	}
	if len(c.LeaseLevels) == 0 {
		c.LeaseLevels = []int{1000, 10000, 100000, 1000000}
	}
	if c.ScaleDuration <= 0 {
		c.ScaleDuration = max(c.Load.Duration/4, 3*time.Second)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if err := c.Load.validate(); err != nil {
		return err
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return fmt.Errorf("%w: %q (want one of %v)", ErrUnknownScenario, s, Scenarios)
		}
	}
	return nil
}

// runner carries one invocation's state.
type runner struct {
	cfg           Config
	fx            *fixture
	log           *slog.Logger
	round, rounds int // interleaved rounds, for progress labels
}

// RunScenarios measures the peers (if any), then each scenario in turn, and
// returns one Result per peer measurement and per scenario, with ratios to
// the peers filled in. With Runs > 1 the runs are interleaved: round i
// measures every peer and then every scenario once, so a peer and the
// scenario it is compared with see the same machine load; ratios are the
// medians of the per-round ratios and the other figures the medians of the
// rounds. lease-scale only grows, so it runs once after the rounds (with
// Runs measurements per step). A scenario that fails is reported (Skipped,
// or Error with what it measured) and the others still run; the errors are
// returned at the end.
func RunScenarios(ctx context.Context, cfg Config) ([]*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	rounds := cfg.Runs
	var scenarios []string
	leaseScale := false
	for _, s := range cfg.Scenarios {
		if s == "lease-scale" {
			leaseScale = true
			continue
		}
		scenarios = append(scenarios, s)
	}
	var all [][]*Result
	var errs []error
	for i := range rounds {
		if ctx.Err() != nil {
			break
		}
		rc := cfg
		rc.Runs, rc.Scenarios = 1, scenarios
		r := &runner{cfg: rc, log: cfg.Logger, round: i + 1, rounds: rounds}
		res, err := r.once(ctx, true)
		errs = append(errs, err)
		all = append(all, res)
	}
	results := mergeRounds(all)
	if leaseScale && ctx.Err() == nil {
		rc := cfg
		rc.Scenarios, rc.Peers = []string{"lease-scale"}, nil
		r := &runner{cfg: rc, log: cfg.Logger}
		res, err := r.once(ctx, false)
		errs = append(errs, err)
		results = append(results, res...)
		addRatios(results)
	}
	return results, errors.Join(errs...)
}

// once runs the peers (if configured) and the scenarios one time each.
func (r *runner) once(ctx context.Context, ratios bool) ([]*Result, error) {
	cfg := r.cfg
	var results []*Result
	if cfg.Peers != nil {
		results = append(results, cfg.Peers.measure(ctx, r)...)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	fx, err := cfg.Target.setupFixture(sctx, cfg.Policies)
	cancel()
	if err != nil {
		return results, err
	}
	r.fx = fx
	var errs []error
	for _, name := range cfg.Scenarios {
		if ctx.Err() != nil {
			break
		}
		r.log.Info("scenario", "name", name, "round", r.round)
		res, err := r.run(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			if res == nil || (res.OpsPerS == 0 && len(res.Scale) == 0) {
				res = &Result{Scenario: name, Skipped: err.Error()}
			} else {
				res.Error = err.Error() // keep what was measured before it failed
			}
		}
		res.Nodes, res.Protocol = len(cfg.Target.URLs), string(cfg.Target.Protocol)
		if res.Policies == 0 {
			res.Policies = cfg.Policies
		}
		results = append(results, res)
	}
	if ratios {
		addRatios(results)
	}
	return results, errors.Join(errs...)
}

// mergeRounds condenses interleaved rounds into one Result per name: the
// round with the median throughput supplies the curves and the counts; ops/s,
// every percentile (the headline's, each part's, the propagation's) and every
// ratio are medians over the rounds, field by field (medianLatency); errors
// and the parts' and propagation's counts add up.
func mergeRounds(rounds [][]*Result) []*Result {
	if len(rounds) == 1 {
		return rounds[0]
	}
	var order []string
	byName := map[string][]*Result{}
	for _, round := range rounds {
		for _, r := range round {
			if _, ok := byName[r.Scenario]; !ok {
				order = append(order, r.Scenario)
			}
			byName[r.Scenario] = append(byName[r.Scenario], r)
		}
	}
	var out []*Result
	for _, name := range order {
		var ok []*Result
		for _, r := range byName[name] {
			if r.Skipped == "" {
				ok = append(ok, r)
			}
		}
		if len(ok) == 0 {
			out = append(out, byName[name][0])
			continue
		}
		sorted := slices.Clone(ok)
		slices.SortFunc(sorted, func(a, b *Result) int { return cmpFloat(a.OpsPerS, b.OpsPerS) })
		m := *sorted[(len(sorted)-1)/2]
		m.Runs, m.Errors, m.Ratios = nil, 0, nil
		ratios := map[string][]float64{}
		var props []Latency
		parts := map[string][]Latency{}
		for _, r := range ok {
			run := RunSummary{OpsPerS: r.OpsPerS, P50Ms: r.P50Ms, P99Ms: r.P99Ms, Errors: r.Errors}
			if r.Propagation != nil {
				run.PropagationP50Ms, run.PropagationP99Ms = r.Propagation.P50Ms, r.Propagation.P99Ms
				props = append(props, *r.Propagation)
			}
			m.Runs = append(m.Runs, run)
			m.Errors += r.Errors
			for k, v := range r.Ratios {
				ratios[k] = append(ratios[k], v)
			}
			for k, v := range r.Parts {
				parts[k] = append(parts[k], v)
			}
		}
		m.OpsPerS = median(mapSlice(m.Runs, func(s RunSummary) float64 { return s.OpsPerS }))
		m.setLatency(medianLatency(mapSlice(ok, (*Result).latency)))
		for k, vs := range ratios {
			if m.Ratios == nil {
				m.Ratios = map[string]float64{}
			}
			m.Ratios[k] = median(vs)
		}
		if len(props) > 0 {
			p := medianLatency(props)
			m.Propagation = &p
		}
		if len(parts) > 0 {
			m.Parts = map[string]Latency{}
			for k, ls := range parts {
				m.Parts[k] = medianLatency(ls)
			}
		}
		if len(m.Scale) > 0 {
			scale := slices.Clone(m.Scale)
			for i := range scale {
				var ops, p50, p99 []float64
				for _, r := range ok {
					if i < len(r.Scale) && r.Scale[i].Size == scale[i].Size {
						ops, p50, p99 = append(ops, r.Scale[i].OpsPerS), append(p50, r.Scale[i].P50Ms), append(p99, r.Scale[i].P99Ms)
					}
				}
				scale[i].OpsPerS, scale[i].P50Ms, scale[i].P99Ms = median(ops), median(p50), median(p99)
			}
			m.Scale = scale
		}
		out = append(out, &m)
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *runner) run(ctx context.Context, name string) (*Result, error) {
	switch name {
	case "authorize":
		return r.authorize(ctx, name, r.cfg.Load)
	case "batch-authorize":
		return r.batchAuthorize(ctx)
	case "issue":
		return r.issue(ctx)
	case "verify":
		return r.verify(ctx)
	case "renew":
		return r.renew(ctx)
	case "revoke-propagation":
		return r.revokePropagation(ctx)
	case "mixed":
		return r.mixed(ctx)
	case "policy-scale":
		return r.policyScale(ctx)
	case "lease-scale":
		return r.leaseScale(ctx)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownScenario, name)
}

// repeat runs op cfg.Runs times under l and condenses the runs.
func (r *runner) repeat(ctx context.Context, name, unit string, l Load, op Op) (*Result, error) {
	var ms []*Measurement
	for i := range r.cfg.Runs {
		if r.cfg.Progress != nil {
			label := name
			if r.cfg.Runs > 1 {
				label = fmt.Sprintf("%s %d/%d", name, i+1, r.cfg.Runs)
			} else if r.rounds > 1 {
				label = fmt.Sprintf("%s %d/%d", name, r.round, r.rounds)
			}
			l.Progress = r.cfg.Progress(label)
		}
		writ := !strings.HasPrefix(name, peerPrefix) // a peer has no audit log
		var before int64
		var dropErr error
		if writ {
			before, dropErr = r.cfg.Target.AuditDrops(ctx)
		}
		m, err := Run(ctx, l, op)
		if err != nil {
			return nil, err
		}
		if writ {
			if after, err := r.cfg.Target.AuditDrops(ctx); err == nil && dropErr == nil {
				m.AuditDropped = after - before
			} else if r.log != nil {
				r.log.Warn("could not read the nodes' audit drop counters", "err", errors.Join(dropErr, err))
			}
		}
		ms = append(ms, m)
	}
	res := fromMeasurements(name, unit, l, ms)
	if res.Calls == 0 && res.Errors > 0 {
		return res, fmt.Errorf("every call failed: %v", res.ErrorSamples)
	}
	return res, nil
}

// workerNode spreads workers over the nodes.
func (r *runner) workerNode(w int) writv1connect.AuthzServiceClient {
	return r.cfg.Target.authz[w%len(r.cfg.Target.authz)]
}

// creds issues one credential per worker (at most 64 distinct ones).
func (r *runner) creds(ctx context.Context, l Load) ([]string, error) {
	creds, _, err := r.fx.credentials(ctx, min(l.Concurrency, 64))
	return creds, err
}

func (r *runner) authorize(ctx context.Context, name string, l Load) (*Result, error) {
	creds, err := r.creds(ctx, l)
	if err != nil {
		return nil, err
	}
	reqs := make([]*writv1.AuthorizeRequest, len(creds))
	for i, c := range creds {
		reqs[i] = r.fx.authorizeRequest(c, 0)
	}
	return r.repeat(ctx, name, "decisions", l, func(ctx context.Context, w int) (int, error) {
		return 1, authorizeOK(r.workerNode(w).Authorize(ctx, connect.NewRequest(reqs[w%len(reqs)])))
	})
}

func (r *runner) batchAuthorize(ctx context.Context) (*Result, error) {
	l := r.cfg.Load
	creds, err := r.creds(ctx, l)
	if err != nil {
		return nil, err
	}
	reqs := make([]*writv1.BatchAuthorizeRequest, len(creds))
	for i, c := range creds {
		reqs[i] = &writv1.BatchAuthorizeRequest{Credential: c}
		for range r.cfg.BatchSize {
			reqs[i].Items = append(reqs[i].Items, &writv1.BatchAuthorizeItem{Action: benchAction, Resource: r.fx.resource, Context: r.fx.ctx})
		}
	}
	res, err := r.repeat(ctx, "batch-authorize", "decisions", l, func(ctx context.Context, w int) (int, error) {
		resp, err := r.workerNode(w).BatchAuthorize(ctx, connect.NewRequest(reqs[w%len(reqs)]))
		if err != nil {
			return 0, err
		}
		for _, it := range resp.Msg.GetResults() {
			if !it.GetDecision().GetAllowed() {
				return 0, fmt.Errorf("batch item not allowed: %v %s", it.GetError(), it.GetDecision().GetReason())
			}
		}
		return len(resp.Msg.GetResults()), nil
	})
	if res != nil {
		res.BatchSize = r.cfg.BatchSize
	}
	return res, err
}

func (r *runner) issue(ctx context.Context) (*Result, error) {
	return r.repeat(ctx, "issue", "leases", r.cfg.Load, func(ctx context.Context, w int) (int, error) {
		_, err := r.fx.issue(ctx, r.workerNode(w))
		return 1, err
	})
}

func (r *runner) verify(ctx context.Context) (*Result, error) {
	l := r.cfg.Load
	creds, err := r.creds(ctx, l)
	if err != nil {
		return nil, err
	}
	return r.repeat(ctx, "verify", "calls", l, func(ctx context.Context, w int) (int, error) {
		resp, err := r.workerNode(w).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: creds[w%len(creds)]}))
		if err == nil && !resp.Msg.GetActive() {
			err = fmt.Errorf("verify: not active: %s", resp.Msg.GetReason())
		}
		return 1, err
	})
}

func (r *runner) renew(ctx context.Context) (*Result, error) {
	l := r.cfg.Load
	creds, err := r.creds(ctx, l)
	if err != nil {
		return nil, err
	}
	return r.repeat(ctx, "renew", "renewals", l, func(ctx context.Context, w int) (int, error) {
		resp, err := r.workerNode(w).Renew(ctx, connect.NewRequest(&writv1.RenewRequest{Credential: creds[w%len(creds)], Context: r.fx.ctx}))
		if err == nil && !resp.Msg.GetDecision().GetAllowed() {
			err = fmt.Errorf("renew denied: %s", resp.Msg.GetDecision().GetReason())
		}
		return 1, err
	})
}

// propagation measures revoke → every node rejects, for one credential
// revoked through node via: the time from the Revoke call until the last node
// answers Verify with active=false (every node is polled in parallel, as
// fast as it answers).
func (r *runner) propagation(ctx context.Context, via int, leaseID, cred string) (time.Duration, error) {
	t := r.cfg.Target
	start := time.Now()
	if _, err := t.authz[via].Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
		Target: &writv1.RevokeRequest_LeaseId{LeaseId: leaseID}, Reason: "writ bench",
	})); err != nil {
		return 0, fmt.Errorf("revoke: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(t.authz))
	for i, c := range t.authz {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pctx.Err() == nil {
				gone, err := rejects(pctx, c, cred)
				if err == nil && gone {
					return
				}
			}
			errs[i] = fmt.Errorf("node %d still accepts a revoked credential after 10s", i+1)
		}()
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

func (r *runner) revokePropagation(ctx context.Context) (*Result, error) {
	l := r.cfg.Load
	l.Concurrency, l.Rate = 1, 0
	prop := NewHistogram()
	var mu sync.Mutex
	start := time.Now()
	n := 0
	res, err := r.repeat(ctx, "revoke-propagation", "revocations", l, func(ctx context.Context, w int) (int, error) {
		n++
		via := n % len(r.cfg.Target.authz)
		issued, err := r.fx.issue(ctx, r.cfg.Target.authz[via])
		if err != nil {
			return 0, err
		}
		if err := r.fx.waitApplied(ctx, issued.GetCredential(), issued.GetIndex()); err != nil {
			return 0, err
		}
		d, err := r.propagation(ctx, via, issued.GetLease().GetId(), issued.GetCredential())
		if err != nil {
			return 0, err
		}
		if time.Since(start) >= l.Warmup {
			mu.Lock()
			prop.Record(d)
			mu.Unlock()
		}
		return 1, nil
	})
	if res == nil {
		return nil, err
	}
	p := prop.Summary()
	res.Propagation, res.PropagationCDF = &p, prop.CDF()
	// The headline latency is the propagation, not the whole op (which
	// includes issuing the credential to revoke).
	res.P50Ms, res.P90Ms, res.P99Ms, res.P999Ms, res.MaxMs = p.P50Ms, p.P90Ms, p.P99Ms, p.P999Ms, p.MaxMs
	res.Percentiles = prop.Percentiles()
	res.Note = "idle cluster, one revocation at a time; latency = Revoke call until every node's Verify says inactive"
	return res, err
}

// mix is the mixed load's operation choice.
type mix struct{ authorize, issue float64 } // the rest revokes

func (r *runner) mixed(ctx context.Context) (*Result, error) {
	l := r.cfg.Load
	creds, err := r.creds(ctx, l)
	if err != nil {
		return nil, err
	}
	m := mix{authorize: 0.95, issue: 0.04}
	type revocable struct {
		node          int
		leaseID, cred string
	}
	pool := make(chan revocable, 4096)
	parts := make([]map[string]*Histogram, l.Concurrency)
	for i := range parts {
		parts[i] = map[string]*Histogram{"authorize": NewHistogram(), "issue": NewHistogram(), "revoke": NewHistogram()}
	}
	prop := NewHistogram()
	var propMu sync.Mutex
	start := time.Now()
	measuring := func() bool { return time.Since(start) >= l.Warmup }
	nodes := len(r.cfg.Target.authz)
	res, err := r.repeat(ctx, "mixed", "calls", l, func(ctx context.Context, w int) (int, error) {
		t0 := time.Now()
		p := rand.Float64()
		kind := "authorize"
		var rev revocable
		switch {
		case p >= m.authorize+m.issue:
			select {
			case rev = <-pool:
				kind = "revoke"
			default: // nothing issued yet to revoke
			}
		case p >= m.authorize:
			kind = "issue"
		}
		var err error
		switch kind {
		case "authorize":
			node := rand.IntN(nodes)
			err = authorizeOK(r.cfg.Target.authz[node].Authorize(ctx, connect.NewRequest(r.fx.authorizeRequest(creds[w%len(creds)], 0))))
		case "issue":
			node := rand.IntN(nodes)
			var issued *writv1.AuthorizeAndIssueResponse
			if issued, err = r.fx.issue(ctx, r.cfg.Target.authz[node]); err == nil {
				select {
				case pool <- revocable{node: node, leaseID: issued.GetLease().GetId(), cred: issued.GetCredential()}:
				default:
				}
			}
		case "revoke":
			var d time.Duration
			via := rand.IntN(nodes)
			if d, err = r.propagation(ctx, via, rev.leaseID, rev.cred); err == nil && measuring() {
				propMu.Lock()
				prop.Record(d)
				propMu.Unlock()
			}
		}
		if err == nil && measuring() {
			parts[w][kind].Record(time.Since(t0))
		}
		return 1, err
	})
	if res == nil {
		return nil, err
	}
	res.Parts = map[string]Latency{}
	for _, kind := range []string{"authorize", "issue", "revoke"} {
		h := NewHistogram()
		for _, p := range parts {
			h.Merge(p[kind])
		}
		res.Parts[kind] = h.Summary()
	}
	p := prop.Summary()
	res.Propagation, res.PropagationCDF = &p, prop.CDF()
	res.Note = "95% authorize, 4% issue, 1% revoke (+ poll every node until it rejects), random node per call; parts and propagation cover the whole measured time; with --runs, each of their percentiles is the median of the runs' own"
	return res, err
}

func (r *runner) scaleLoad() Load {
	l := r.cfg.Load
	l.Duration = r.cfg.ScaleDuration
	l.Warmup = min(l.Warmup, time.Second)
	return l
}

// scalePoint condenses one step's measurement.
func scalePoint(size int, res *Result) ScalePoint {
	return ScalePoint{Size: size, OpsPerS: res.OpsPerS, Latency: Latency{
		Count: res.Calls, P50Ms: res.P50Ms, P90Ms: res.P90Ms, P99Ms: res.P99Ms, P999Ms: res.P999Ms, MaxMs: res.MaxMs,
	}}
}

func (r *runner) policyScale(ctx context.Context) (*Result, error) {
	out := &Result{Scenario: "policy-scale", Unit: "decisions"}
	defer func() {
		// Leave the configured policy set in place for later scenarios.
		_ = r.cfg.Target.putPolicies(context.WithoutCancel(ctx), r.cfg.Policies)
	}()
	var last *Result
	for _, n := range r.cfg.PolicyLevels {
		if err := r.cfg.Target.putPolicies(ctx, n); err != nil {
			return out, err
		}
		res, err := r.authorize(ctx, fmt.Sprintf("policy-scale %d", n), r.scaleLoad())
		if err != nil {
			return out, err
		}
		out.Scale = append(out.Scale, scalePoint(n, res))
		out.Errors += res.Errors
		last = res
	}
	copyHeadline(out, last)
	out.Policies = r.cfg.PolicyLevels[len(r.cfg.PolicyLevels)-1]
	out.Note = "authorize at each policy count; headline figures are the largest step"
	return out, nil
}

func (r *runner) leaseScale(ctx context.Context) (*Result, error) {
	out := &Result{Scenario: "lease-scale", Unit: "decisions"}
	issued := 0
	fill := r.cfg.Load
	fill.Rate, fill.Warmup, fill.Concurrency = 0, 0, max(fill.Concurrency, 128)
	var last *Result
	for _, n := range r.cfg.LeaseLevels {
		if issued < n {
			r.log.Info("lease-scale: issuing leases", "have", issued, "want", n)
			if err := r.fillLeases(ctx, n-issued, fill.Concurrency); err != nil {
				return out, err
			}
			issued = n
		}
		res, err := r.authorize(ctx, fmt.Sprintf("lease-scale %d", n), r.scaleLoad())
		if err != nil {
			return out, err
		}
		out.Scale = append(out.Scale, scalePoint(n, res))
		out.Errors += res.Errors
		last = res
	}
	copyHeadline(out, last)
	out.Note = "authorize at each count of live leases this run issued (leases already on the target come on top); headline figures are the largest step"
	return out, nil
}

// fillLeases issues n leases with conc concurrent callers over every node.
// A failed issue (an overloaded leader answers ResourceExhausted or times
// out) is retried after a pause; the fill gives up only when nothing has
// been issued for a minute.
func (r *runner) fillLeases(ctx context.Context, n, conc int) error {
	var left, done atomic.Int64
	left.Store(int64(n))
	var lastProgress atomic.Int64
	lastProgress.Store(time.Now().UnixNano())
	var errMu sync.Mutex
	var lastErr error
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && left.Add(-1) >= 0 {
				if _, err := r.fx.issue(ctx, r.workerNode(w)); err != nil {
					left.Add(1)
					errMu.Lock()
					lastErr = err
					errMu.Unlock()
					if time.Since(time.Unix(0, lastProgress.Load())) > time.Minute {
						cancel()
						return
					}
					select {
					case <-time.After(100 * time.Millisecond):
					case <-ctx.Done():
					}
					continue
				}
				done.Add(1)
				lastProgress.Store(time.Now().UnixNano())
			}
		}()
	}
	wg.Wait()
	if got := done.Load(); got < int64(n) {
		why := "no progress for a minute"
		if parent.Err() != nil {
			why = "cancelled"
		}
		return fmt.Errorf("%w: issued %d of %d leases (%s): %v", ErrSetup, got, n, why, cmpOr(lastErr, ctx.Err()))
	}
	return nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func copyHeadline(dst, src *Result) {
	if src == nil {
		return
	}
	dst.OpsPerS, dst.P50Ms, dst.P90Ms, dst.P99Ms, dst.P999Ms, dst.MaxMs = src.OpsPerS, src.P50Ms, src.P90Ms, src.P99Ms, src.P999Ms, src.MaxMs
	dst.Ops, dst.Calls, dst.DurationS, dst.Mode, dst.Concurrency, dst.Rate = src.Ops, src.Calls, src.DurationS, src.Mode, src.Concurrency, src.Rate
	dst.Series, dst.Percentiles = src.Series, src.Percentiles
}
