package authz

import (
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// Shadow mode: a candidate policy set is evaluated beside the active one on
// every decision, its answer is never used, and disagreements are counted
// and reported before the candidate is activated.

// ShadowResult is one shadow evaluation: the active set's decision (the one
// answered) and the candidate's.
type ShadowResult struct {
	Set       string
	Request   Request
	Active    Decision
	Candidate Decision
	// Kind is Unchanged when the two agree.
	Kind ChangeKind
}

// ShadowObserver is told of every shadow evaluation. Implementations (the
// metrics and audit sinks) must be safe for concurrent use and fast: they
// run on the decision path. They must not modify the result's Request.
type ShadowObserver interface {
	ObserveShadow(ShadowResult)
}

// ShadowCounts are the counts of one set's shadow evaluations.
type ShadowCounts struct {
	Evaluations uint64
	// Disagreements = Widened + Narrowed + Reasoned.
	Disagreements, Widened, Narrowed, Reasoned uint64
	// CandidateErrors counts requests the candidate could not decide (it
	// did not compile, or found the request malformed).
	CandidateErrors uint64
	// CandidateVersion is the candidate version counted: the counts start
	// from zero when a new candidate version is first evaluated.
	CandidateVersion uint64
}

// ShadowStats counts shadow evaluations per set and logs each disagreement
// at Warn. It is a ShadowObserver and is safe for concurrent use; counting
// an evaluation is a map load and atomic adds.
type ShadowStats struct {
	log  *slog.Logger
	mu   sync.Mutex
	sets atomic.Pointer[map[string]*shadowCounters]
	// Next, when set, is told of every result after it is counted (the hook
	// for metrics and audit).
	next ShadowObserver
}

// shadowCounters count one candidate version of one set: a new candidate
// version starts from zero.
type shadowCounters struct {
	version                                      uint64
	evals, widened, narrowed, reasoned, candErrs atomic.Uint64
}

// NewShadowStats returns empty counters that log disagreements to log (nil:
// discard) and pass every result on to next (may be nil).
func NewShadowStats(log *slog.Logger, next ShadowObserver) *ShadowStats {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &ShadowStats{log: log, next: next}
	s.sets.Store(&map[string]*shadowCounters{})
	return s
}

func (s *ShadowStats) counters(set string, version uint64) *shadowCounters {
	if c, ok := (*s.sets.Load())[set]; ok && c.version == version {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.sets.Load()
	if c, ok := old[set]; ok && c.version == version {
		return c
	}
	next := maps.Clone(old)
	c := &shadowCounters{version: version}
	next[set] = c
	s.sets.Store(&next)
	return c
}

// ObserveShadow counts r, logs it when the two sets disagree, and passes it on.
func (s *ShadowStats) ObserveShadow(r ShadowResult) {
	c := s.counters(r.Set, r.Candidate.Version)
	c.evals.Add(1)
	switch r.Kind {
	case Widened:
		c.widened.Add(1)
	case Narrowed:
		c.narrowed.Add(1)
	case Reasoned:
		c.reasoned.Add(1)
	}
	if r.Kind != Unchanged {
		s.log.Warn("shadow policy set disagrees",
			"policy_set", r.Set, "change", r.Kind.String(),
			"active_version", r.Active.Version, "candidate_version", r.Candidate.Version,
			"principal", r.Request.Identity.GetId(), "action", r.Request.Action,
			"resource", r.Request.Resource.Type+"::"+r.Request.Resource.ID,
			"active", r.Active.Reason, "candidate", r.Candidate.Reason)
	}
	if s.next != nil {
		s.next.ObserveShadow(r)
	}
}

// CandidateFailed counts a request the candidate could not decide.
func (s *ShadowStats) CandidateFailed(set string, version uint64, err error) {
	c := s.counters(set, version)
	c.evals.Add(1)
	c.candErrs.Add(1)
	s.log.Warn("shadow policy set failed", "policy_set", set, "candidate_version", version, "err", err)
}

// Counts returns a copy of every set's counts.
func (s *ShadowStats) Counts() map[string]ShadowCounts {
	m := *s.sets.Load()
	out := make(map[string]ShadowCounts, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		c := m[name]
		w, n, r := c.widened.Load(), c.narrowed.Load(), c.reasoned.Load()
		out[name] = ShadowCounts{
			Evaluations: c.evals.Load(), Disagreements: w + n + r,
			Widened: w, Narrowed: n, Reasoned: r,
			CandidateErrors: c.candErrs.Load(), CandidateVersion: c.version,
		}
	}
	return out
}

// Reset drops the counts of set (a new candidate starts from zero).
func (s *ShadowStats) Reset(set string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := maps.Clone(*s.sets.Load())
	delete(next, set)
	s.sets.Store(&next)
}
