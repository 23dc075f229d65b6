package authz

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

type recordingObserver struct{ got []ShadowResult }

func (o *recordingObserver) ObserveShadow(r ShadowResult) { o.got = append(o.got, r) }

func TestShadowStatsCountsPerCandidateVersion(t *testing.T) {
	t.Parallel()
	obs := &recordingObserver{}
	s := NewShadowStats(nil, obs)
	allow := Decision{Allowed: true, Determining: []PolicyRef{{ID: "a"}}, Version: 1}
	deny := Decision{Version: 1}
	forbid := Decision{Determining: []PolicyRef{{ID: "f"}}, Version: 1}
	cand := func(d Decision, v uint64) Decision { d.Version = v; return d }
	for _, r := range []ShadowResult{
		{Set: "prod", Active: deny, Candidate: cand(allow, 4)},
		{Set: "prod", Active: allow, Candidate: cand(deny, 4)},
		{Set: "prod", Active: deny, Candidate: cand(forbid, 4)},
		{Set: "prod", Active: allow, Candidate: cand(allow, 4)},
		{Set: "dev", Active: allow, Candidate: cand(allow, 1)},
	} {
		r.Kind = Compare(r.Active, r.Candidate)
		s.ObserveShadow(r)
	}
	s.CandidateFailed("dev", 1, ErrCompile)
	want := map[string]ShadowCounts{
		"prod": {Evaluations: 4, Disagreements: 3, Widened: 1, Narrowed: 1, Reasoned: 1, CandidateVersion: 4},
		"dev":  {Evaluations: 2, CandidateErrors: 1, CandidateVersion: 1},
	}
	if diff := cmp.Diff(want, s.Counts()); diff != "" {
		t.Fatalf("counts (-want +got):\n%s", diff)
	}
	if len(obs.got) != 5 {
		t.Fatalf("observer saw %d results", len(obs.got))
	}
	// A new candidate version starts from zero.
	s.ObserveShadow(ShadowResult{Set: "prod", Active: allow, Candidate: cand(deny, 5), Kind: Narrowed})
	if got := s.Counts()["prod"]; got != (ShadowCounts{Evaluations: 1, Disagreements: 1, Narrowed: 1, CandidateVersion: 5}) {
		t.Fatalf("after a new version: %+v", got)
	}
}

func TestSamplerKeepsTheLastSampled(t *testing.T) {
	t.Parallel()
	s := NewSampler(3, 2)
	for i := range 10 {
		s.Record("prod", Request{Action: string(rune('a' + i))})
	}
	var got string
	for _, r := range s.Recent("prod") {
		got += r.Action
	}
	// Every second request (b d f h j), the last three of them, oldest first.
	if got != "fhj" {
		t.Fatalf("recent = %q", got)
	}
	if s.Recent("dev") != nil || (*Sampler)(nil).Recent("x") != nil {
		t.Fatal("unknown set or nil sampler has requests")
	}
	NewSampler(0, 1).Record("prod", Request{}) // disabled: no panic
}
