package authz

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Change is how a candidate policy set decides one request differently from
// the base set.
type Change struct {
	// Kind is Widened (deny → allow), Narrowed (allow → deny) or Reasoned
	// (same decision, different determining policies).
	Kind      ChangeKind
	Request   Request
	Base      Decision
	Candidate Decision
}

// ChangeKind classifies a Change.
type ChangeKind uint8

// The kinds of change, from the most to the least serious.
const (
	Unchanged ChangeKind = iota
	// Widened: the candidate allows what the base denies (access widened).
	Widened
	// Narrowed: the candidate denies what the base allows.
	Narrowed
	// Reasoned: the same decision for other reasons (determining policies
	// or errors differ).
	Reasoned
)

func (k ChangeKind) String() string {
	switch k {
	case Widened:
		return "widened"
	case Narrowed:
		return "narrowed"
	case Reasoned:
		return "reasons"
	}
	return "unchanged"
}

// Compare classifies how cand differs from base for one request.
func Compare(base, cand Decision) ChangeKind {
	switch {
	case !base.Allowed && cand.Allowed:
		return Widened
	case base.Allowed && !cand.Allowed:
		return Narrowed
	case !slices.EqualFunc(base.Determining, cand.Determining, func(a, b PolicyRef) bool { return a.ID == b.ID }),
		!slices.Equal(base.Errors, cand.Errors):
		return Reasoned
	}
	return Unchanged
}

// Diff decides every request under base and cand and returns the requests
// they decide differently, in input order. A request either set finds
// malformed is skipped and counted in invalid.
func Diff(base, cand *PolicySet, reqs []Request) (changes []Change, invalid int) {
	for _, r := range reqs {
		b, err := base.Decide(r)
		if err != nil {
			invalid++
			continue
		}
		c, err := cand.Decide(r)
		if err != nil {
			invalid++
			continue
		}
		if k := Compare(b, c); k != Unchanged {
			changes = append(changes, Change{Kind: k, Request: r, Base: b, Candidate: c})
		}
	}
	return changes, invalid
}

// Sampler keeps a bounded sample of recent requests per policy set, for
// `writ policy diff` over recent decisions. Record is safe for concurrent
// use and takes no lock on the path that skips a request; a recorded
// request costs one allocation and a short critical section.
type Sampler struct {
	every uint64
	size  int
	n     atomic.Uint64
	mu    sync.Mutex
	rings map[string]*ring
}

type ring struct {
	buf  []Request
	next int
	full bool
}

// NewSampler keeps the last size sampled requests per set, sampling one
// request in every (1 = all). size ≤ 0 disables it.
func NewSampler(size, every int) *Sampler {
	if every < 1 {
		every = 1
	}
	return &Sampler{every: uint64(every), size: size, rings: map[string]*ring{}}
}

// Record samples req, decided under the set named set. The sampler keeps
// req's maps: the caller must not modify them afterwards.
func (s *Sampler) Record(set string, req Request) {
	if s == nil || s.size <= 0 || s.n.Add(1)%s.every != 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rings[set]
	if r == nil {
		r = &ring{buf: make([]Request, s.size)}
		s.rings[set] = r
	}
	r.buf[r.next] = req
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// Recent returns the sampled requests of set, oldest first.
func (s *Sampler) Recent(set string) []Request {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rings[set]
	if r == nil {
		return nil
	}
	if !r.full {
		return slices.Clone(r.buf[:r.next])
	}
	return append(slices.Clone(r.buf[r.next:]), r.buf[:r.next]...)
}
