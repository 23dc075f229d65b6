package rpc

import (
	"log/slog"
	"sync"

	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/policies"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// ShadowPrefix names shadow candidates: the stored set "shadow/prod" is
// evaluated beside "prod" on every decision, and never answers.
const ShadowPrefix = "shadow/"

// PolicyHistoryVersions is how many versions of each policy set the
// replicated history keeps (PutPolicySet.keep_versions): the newest 50,
// the active one always among them.
const PolicyHistoryVersions = 50

// PolicyToolsConfig tunes PolicyTools.
type PolicyToolsConfig struct {
	Logger *slog.Logger
	// SampleSize is how many recent requests per policy set are kept for
	// DiffPolicySet (default 1024; negative disables sampling).
	SampleSize int
	// SampleEvery samples one decision in this many (default 4).
	SampleEvery int
	// Observer, when set, is told of every shadow evaluation after it is
	// counted: the hook for metrics and audit.
	Observer authz.ShadowObserver
}

// PolicyTools is the node-local state of policy tooling: the sample of
// recent requests diffs replay, and the shadow-mode counters. It is safe
// for concurrent use.
type PolicyTools struct {
	sampler *authz.Sampler
	shadow  *authz.ShadowStats
	names   sync.Map // set name → ShadowPrefix+name, so the decision path does not allocate it
}

// NewPolicyTools defaults cfg and returns empty tools.
func NewPolicyTools(cfg PolicyToolsConfig) *PolicyTools {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SampleSize == 0 {
		cfg.SampleSize = 1024
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 4
	}
	return &PolicyTools{
		sampler: authz.NewSampler(cfg.SampleSize, cfg.SampleEvery),
		shadow:  authz.NewShadowStats(cfg.Logger, cfg.Observer),
	}
}

// Shadow returns the shadow-mode counters.
func (t *PolicyTools) Shadow() *authz.ShadowStats { return t.shadow }

func (t *PolicyTools) shadowName(set string) string {
	if v, ok := t.names.Load(set); ok {
		return v.(string)
	}
	n := ShadowPrefix + set
	t.names.Store(set, n)
	return n
}

// observe runs after every decision made by the decision path: it samples
// the request and, when a shadow candidate exists for the set, evaluates
// it and counts whether it agrees. The candidate's answer is never used.
func (t *PolicyTools) observe(engine *authz.Engine, view *fsm.View, req authz.Request, dec authz.Decision) {
	t.sampler.Record(dec.PolicySet, req)
	cand, ok := view.PolicySet(t.shadowName(dec.PolicySet))
	if !ok {
		return
	}
	ps, err := engine.Get(cand)
	if err != nil {
		t.shadow.CandidateFailed(dec.PolicySet, cand.GetVersion(), err)
		return
	}
	cdec, err := ps.Decide(req)
	if err != nil {
		t.shadow.CandidateFailed(dec.PolicySet, cand.GetVersion(), err)
		return
	}
	t.shadow.ObserveShadow(authz.ShadowResult{
		Set: dec.PolicySet, Request: req, Active: dec, Candidate: cdec, Kind: authz.Compare(dec, cdec),
	})
}

// explainToAPI fills the explanation fields of an API decision.
func explainToAPI(out *writv1.Decision, dec authz.Decision) {
	out.Outcome = outcomeToAPI(dec.Outcome)
	for _, e := range dec.PolicyErrors {
		out.PolicyErrors = append(out.PolicyErrors, &writv1.PolicyError{PolicyId: e.Policy.ID, Message: e.Message, Annotations: e.Policy.Annotations})
	}
}

// defaultSchema is the embedded policies/writ.cedarschema. It is tested to
// parse (policies and authz tests), so failing here is a build defect.
func defaultSchema() *authz.Schema {
	s, err := authz.ParseSchema("writ.cedarschema", policies.Schema)
	if err != nil {
		panic("rpc: embedded schema: " + err.Error())
	}
	return s
}
