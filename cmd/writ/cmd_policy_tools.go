package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/authz/policytest"
	"github.com/writ-dev/writ/policies"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// Policy tooling: history and rollback, validation, plain Cedar
// evaluation, offline tests and diffs, shadow mode.

// explainText prints, for a decision, each determining policy's @reason and
// each policy that failed to evaluate.
func explainText(t *textOut, d *writv1.Decision) {
	switch d.GetOutcome() {
	case writv1.DecisionOutcome_DECISION_OUTCOME_FORBIDDEN:
		t.kv("outcome", "forbidden (a forbid matched)")
	case writv1.DecisionOutcome_DECISION_OUTCOME_NO_PERMIT:
		t.kv("outcome", "no permit matched")
	}
	for _, dp := range d.GetDeterminingPolicies() {
		if r := dp.GetReason(); r != "" {
			t.kv("why", policyName(dp)+": "+r)
		}
	}
}

// localSchema reads --schema FILE, or the embedded Writ schema.
func localSchema(path string) (*authz.Schema, error) {
	if path == "" {
		return authz.ParseSchema("writ.cedarschema", policies.Schema)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, flagErr("schema", err)
	}
	s, err := authz.ParseSchema(path, b)
	if err != nil {
		return nil, flagErr("schema", err)
	}
	return s, nil
}

// emitJSON prints a Go value as indented JSON (for -o json of the offline
// commands, which have no response message).
func emitJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func (a *app) policyHistoryCmd() *cobra.Command {
	var (
		rf    readFlags
		cedar bool
	)
	cmd := &cobra.Command{
		Use:     "history NAME",
		Short:   "List the versions of a policy set kept in the replicated history",
		Example: "  writ policy history prod\n  writ policy get prod --version 3",
		Args:    exactArgs("NAME"),
	}
	rf.add(cmd)
	cmd.Flags().BoolVar(&cedar, "cedar", false, "include each version's Cedar text (with -o json)")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.policy.ListPolicySetVersions(ctx, connect.NewRequest(&writv1.ListPolicySetVersionsRequest{Name: args[0], IncludeCedar: cedar, Read: ro}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			rows := make([][]string, 0, len(resp.Msg.GetVersions()))
			for _, v := range resp.Msg.GetVersions() {
				mark := ""
				if v.GetVersion() == resp.Msg.GetActiveVersion() {
					mark = "*"
				}
				from := ""
				if f := v.GetRolledBackFrom(); f != 0 {
					from = "v" + u64(f)
				}
				rows = append(rows, []string{mark, u64(v.GetVersion()), shortTime(v.GetActivatedAt()), u64(v.GetActivatedIndex()), from, v.GetDescription()})
			}
			t.table([]string{"", "VERSION", "ACTIVATED", "INDEX", "ROLLBACK OF", "DESCRIPTION"}, rows)
		})
	})
	return cmd
}

func (a *app) policyRollbackCmd() *cobra.Command {
	var (
		to, expect  uint64
		description string
	)
	cmd := &cobra.Command{
		Use:   "rollback NAME --to VERSION",
		Short: "Activate an earlier version's text as a new version",
		Long: `Roll a policy set back: the text of version --to (from 'writ policy history')
is validated against the schema again and activated as the next version,
atomically at one Raft index on every node. Version numbers only grow, so a
lease issued under a version always names one text.`,
		Example: "  writ policy rollback prod --to 3 --expect-version 5",
		Args:    exactArgs("NAME"),
	}
	f := cmd.Flags()
	f.Uint64Var(&to, "to", 0, "the version to restore")
	f.Uint64Var(&expect, "expect-version", 0, "fail unless the active version is this")
	f.StringVar(&description, "description", "", "free text (default: rollback to vN)")
	_ = cmd.MarkFlagRequired("to")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		resp, err := c.policy.RollbackPolicySet(ctx, connect.NewRequest(&writv1.RollbackPolicySetRequest{
			Name: args[0], Version: to, ExpectVersion: expect, Description: description,
		}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			policyHeader(t, resp.Msg.GetPolicySet())
			t.kv("rolled back from", "v"+u64(resp.Msg.GetPolicySet().GetRolledBackFrom()))
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

func (a *app) policyValidateCmd() *cobra.Command {
	var (
		file, schema string
		local        bool
	)
	cmd := &cobra.Command{
		Use:   "validate [NAME] --file FILE.cedar",
		Short: "Check Cedar policies against the schema without activating them",
		Long: `Validate Cedar text against Writ's schema: on the server (its schema), or
with --local against the embedded schema or --schema FILE. Problems are
printed with their position; any problem exits 1.`,
		Example: "  writ policy validate prod --file prod.cedar\n  writ policy validate --local --file prod.cedar",
		Args:    cobra.MaximumNArgs(1),
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "Cedar source file, or - for stdin")
	f.BoolVar(&local, "local", false, "validate here instead of on the server")
	f.StringVar(&schema, "schema", "", "with --local: a Cedar schema file (default: Writ's)")
	_ = cmd.MarkFlagRequired("file")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := "policy"
		if len(args) == 1 {
			name = args[0]
		}
		src, err := readInput(file, a.stdin)
		if err != nil {
			return flagErr("file", err)
		}
		var resp *writv1.ValidatePolicySetResponse
		if local {
			s, err := localSchema(schema)
			if err != nil {
				return err
			}
			resp = localValidate(s, name, src)
		} else {
			err := a.call(func(ctx context.Context, c *clients, _ *printer, _ []string) error {
				r, err := c.policy.ValidatePolicySet(ctx, connect.NewRequest(&writv1.ValidatePolicySetRequest{Name: name, Cedar: string(src)}))
				if err == nil {
					resp = r.Msg
				}
				return err
			})(cmd, args)
			if err != nil {
				return err
			}
		}
		p, err := a.out()
		if err != nil {
			return err
		}
		if err := p.emit(resp, func(t *textOut) {
			if resp.GetValid() {
				t.kv("valid", fmt.Sprintf("%d policies", resp.GetPolicies()))
				return
			}
			for _, pr := range resp.GetProblems() {
				t.line(problemText(pr))
			}
		}); err != nil {
			return err
		}
		if !resp.GetValid() {
			return &runError{err: fmt.Errorf("%d problem(s)", len(resp.GetProblems()))}
		}
		return nil
	}
	return cmd
}

func problemText(pr *writv1.PolicyProblem) string {
	s := pr.GetPosition() + ": "
	if pr.GetPolicyId() != "" {
		s += "policy " + pr.GetPolicyId() + ": "
	}
	return s + pr.GetMessage()
}

func localValidate(s *authz.Schema, name string, src []byte) *writv1.ValidatePolicySetResponse {
	ps, err := s.Validate(name, 0, src)
	out := &writv1.ValidatePolicySetResponse{Valid: err == nil}
	if err != nil {
		ve, ok := err.(*authz.ValidationError)
		if !ok {
			out.Problems = []*writv1.PolicyProblem{{Position: name, Message: err.Error()}}
			return out
		}
		for _, p := range ve.Problems {
			out.Problems = append(out.Problems, &writv1.PolicyProblem{Position: p.Position, PolicyId: p.PolicyID, Message: p.Message})
		}
		return out
	}
	out.Policies = uint32(ps.Len())
	return out
}

func (a *app) policyEvalCmd() *cobra.Command {
	var (
		file, set, entities, request, schema string
		version                              uint64
		writSchema, validateReq, local       bool
		rf                                   readFlags
	)
	cmd := &cobra.Command{
		Use:   "eval (--file FILE.cedar | --set NAME) --request REQUEST.json [--entities ENTITIES.json]",
		Short: "Evaluate one request exactly as Cedar does",
		Long: `Plain Cedar evaluation, for checking Writ against Cedar's own tooling and test
suites: policies from --file (inline) or a stored set (--set, --version),
entities in Cedar's standard JSON format, and a request

  {"principal": {"type": "User", "id": "alice"}, "action": ..., "resource": ...,
   "context": {...}}

(entities may also be written "User::\"alice\""). Policies are named as Cedar
names them: policy0, policy1, ... by position; their @id and other
annotations are reported beside. --schema types the entities as Cedar does
when given a schema. Exit 0 on allow, 3 on deny. --local evaluates here
(--file only) without a server.`,
		Example: `  writ policy eval --file policies.cedar --entities entities.json --request request.json
  writ policy eval --set prod --writ-schema --entities e.json --request r.json -o json`,
		Args: noArgs,
	}
	rf.add(cmd)
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "Cedar policies, or - for stdin")
	f.StringVar(&set, "set", "", "a stored policy set instead of --file")
	f.Uint64Var(&version, "version", 0, "with --set: a version from the history (default: active)")
	f.StringVar(&entities, "entities", "", "Cedar JSON entities file (default: none)")
	f.StringVar(&request, "request", "", "request JSON file, or - for stdin")
	f.StringVar(&schema, "schema", "", "Cedar schema file typing the entities")
	f.BoolVar(&writSchema, "writ-schema", false, "type the entities with Writ's schema")
	f.BoolVar(&validateReq, "validate-request", false, "also validate the request against the schema")
	f.BoolVar(&local, "local", false, "evaluate here, without a server (needs --file)")
	_ = cmd.MarkFlagRequired("request")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if (file == "") == (set == "") {
			return usagef("give exactly one of --file and --set")
		}
		if schema != "" && writSchema {
			return usagef("give --schema or --writ-schema, not both")
		}
		req := &writv1.EvaluateCedarRequest{WritSchema: writSchema, ValidateRequest: validateReq}
		reqJSON, err := readInput(request, a.stdin)
		if err != nil {
			return flagErr("request", err)
		}
		req.RequestJson = string(reqJSON)
		if entities != "" {
			b, err := readInput(entities, a.stdin)
			if err != nil {
				return flagErr("entities", err)
			}
			req.EntitiesJson = string(b)
		}
		if schema != "" {
			b, err := os.ReadFile(schema)
			if err != nil {
				return flagErr("schema", err)
			}
			req.Schema = string(b)
		}
		if file != "" {
			src, err := readInput(file, a.stdin)
			if err != nil {
				return flagErr("file", err)
			}
			req.Policies = &writv1.EvaluateCedarRequest_Cedar{Cedar: string(src)}
		} else {
			req.Policies = &writv1.EvaluateCedarRequest_PolicySet{PolicySet: &writv1.StoredPolicySet{Name: set, Version: version}}
		}
		var resp *writv1.EvaluateCedarResponse
		if local {
			if file == "" {
				return usagef("--local needs --file")
			}
			if resp, err = localEval(req, file); err != nil {
				return err
			}
		} else {
			ro, err := rf.options()
			if err != nil {
				return err
			}
			req.Read = ro
			err = a.call(func(ctx context.Context, c *clients, _ *printer, _ []string) error {
				r, err := c.policy.EvaluateCedar(ctx, connect.NewRequest(req))
				if err == nil {
					resp = r.Msg
				}
				return err
			})(cmd, args)
			if err != nil {
				return err
			}
		}
		p, err := a.out()
		if err != nil {
			return err
		}
		if err := p.emit(resp, func(t *textOut) { cedarAnswerText(t, resp) }); err != nil {
			return err
		}
		if resp.GetDecision() != "allow" {
			return errNegative
		}
		return nil
	}
	return cmd
}

func cedarAnswerText(t *textOut, r *writv1.EvaluateCedarResponse) {
	t.kv("decision", r.GetDecision())
	switch r.GetOutcome() {
	case writv1.DecisionOutcome_DECISION_OUTCOME_FORBIDDEN:
		t.kv("outcome", "forbidden (a forbid matched)")
	case writv1.DecisionOutcome_DECISION_OUTCOME_NO_PERMIT:
		t.kv("outcome", "no permit matched")
	}
	for _, p := range r.GetReasons() {
		name := p.GetId()
		if id := p.GetAnnotations()["id"]; id != "" {
			name += " (@id " + id + ")"
		}
		t.kv("reason", name+" at "+p.GetPosition())
		if why := p.GetAnnotations()["reason"]; why != "" {
			t.kv("  why", why)
		}
	}
	for _, e := range r.GetErrors() {
		t.kv("error", e.GetPolicyId()+": "+e.GetMessage())
	}
	if r.GetPolicySet() != "" {
		t.kv("policy set", fmt.Sprintf("%s v%d", r.GetPolicySet(), r.GetPolicyVersion()))
	}
}

func localEval(req *writv1.EvaluateCedarRequest, file string) (*writv1.EvaluateCedarResponse, error) {
	in := authz.CedarInput{
		Name: displayName(file), Policies: []byte(req.GetCedar()),
		Entities: []byte(req.GetEntitiesJson()), Request: []byte(req.GetRequestJson()),
		ValidateRequest: req.GetValidateRequest(),
	}
	switch {
	case req.GetSchema() != "":
		s, err := authz.ParseSchema("schema", []byte(req.GetSchema()))
		if err != nil {
			return nil, flagErr("schema", err)
		}
		in.Schema = s
	case req.GetWritSchema():
		s, err := localSchema("")
		if err != nil {
			return nil, err
		}
		in.Schema = s
	}
	ans, err := authz.EvalCedarJSON(in)
	if err != nil {
		return nil, usagef("%v", err)
	}
	out := &writv1.EvaluateCedarResponse{Decision: "deny"}
	if ans.Allowed {
		out.Decision = "allow"
	}
	switch ans.Outcome {
	case authz.OutcomeAllowed:
		out.Outcome = writv1.DecisionOutcome_DECISION_OUTCOME_ALLOWED
	case authz.OutcomeForbidden:
		out.Outcome = writv1.DecisionOutcome_DECISION_OUTCOME_FORBIDDEN
	case authz.OutcomeNoPermit:
		out.Outcome = writv1.DecisionOutcome_DECISION_OUTCOME_NO_PERMIT
	}
	for _, r := range ans.Reasons {
		out.Reasons = append(out.Reasons, &writv1.CedarPolicyRef{Id: r.ID, Annotations: r.Annotations, Position: r.Position})
	}
	for _, e := range ans.Errors {
		out.Errors = append(out.Errors, &writv1.CedarPolicyError{PolicyId: e.PolicyID, Message: e.Message})
	}
	return out, nil
}

// testReport is `writ policy test -o json`.
type testReport struct {
	Dir     string       `json:"dir"`
	Passed  int          `json:"passed"`
	Failed  int          `json:"failed"`
	Sets    []string     `json:"sets"`
	Invalid []testProb   `json:"invalid_sets,omitempty"`
	Cases   []testResult `json:"cases"`
}

type testProb struct {
	Set   string `json:"set"`
	Path  string `json:"path"`
	Error string `json:"error"`
}

type testResult struct {
	File     string `json:"file"`
	Case     string `json:"case"`
	Passed   bool   `json:"passed"`
	Failure  string `json:"failure,omitempty"`
	Decision string `json:"decision,omitempty"`
}

func (a *app) policyTestCmd() *cobra.Command {
	var (
		schema  string
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "test DIR",
		Short: "Run policy test cases (YAML) against the policy sets in a directory",
		Long: `Offline, no server needed. Every *.cedar file under DIR is a policy set named
after the file (sets/prod.cedar is "prod"), validated against Writ's schema
(or --schema FILE). Every *.yaml file with a top-level "cases:" key is a case
file: requests with the decision and determining policies they must get (the
format is in authz/policytest and policies/README.md). Exits 1 when a set is
invalid or a case fails, 2 when DIR cannot be read.`,
		Example: "  writ policy test policies/\n  writ policy test policies/ -v -o json",
		Args:    exactArgs("DIR"),
	}
	cmd.Flags().StringVar(&schema, "schema", "", "a Cedar schema file (default: Writ's)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list passing cases too")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		p, err := a.out()
		if err != nil {
			return err
		}
		s, err := localSchema(schema)
		if err != nil {
			return err
		}
		d, err := policytest.LoadDir(args[0])
		if err != nil {
			return usagef("%v", err)
		}
		sum := policytest.Run(d, s)
		if p.format.kind == "json" {
			rep := testReport{Dir: args[0], Passed: sum.Passed, Failed: sum.Failed, Sets: sum.Sets, Cases: []testResult{}}
			for _, ip := range sum.Invalid {
				rep.Invalid = append(rep.Invalid, testProb{Set: ip.Set, Path: ip.Path, Error: ip.Err.Error()})
			}
			for _, r := range sum.Results {
				rep.Cases = append(rep.Cases, testResult{File: r.File, Case: r.Case, Passed: r.Failure == "", Failure: r.Failure, Decision: r.Decision.Reason})
			}
			if err := emitJSON(a.stdout, rep); err != nil {
				return err
			}
		} else {
			w := a.stdout
			for _, ip := range sum.Invalid {
				fmt.Fprintf(w, "INVALID %s (%s): %v\n", ip.Set, ip.Path, ip.Err)
			}
			for _, r := range sum.Results {
				switch {
				case r.Failure != "":
					fmt.Fprintf(w, "FAIL %s: %s\n     %s\n", r.File, r.Case, r.Failure)
				case verbose:
					fmt.Fprintf(w, "ok   %s: %s (%s)\n", r.File, r.Case, r.Decision.Reason)
				}
			}
			fmt.Fprintf(w, "%d passed, %d failed; %d sets (%s), %d case files\n",
				sum.Passed, sum.Failed, len(sum.Sets), strings.Join(sum.Sets, ", "), len(d.Files))
		}
		if !sum.OK() {
			if sum.Passed+sum.Failed == 0 {
				return &runError{err: fmt.Errorf("no cases under %s", args[0])}
			}
			return &runError{err: fmt.Errorf("%d case(s) failed, %d set(s) invalid", sum.Failed, len(sum.Invalid))}
		}
		return nil
	}
	return cmd
}

// diffReport is `writ policy diff --cases -o json`.
type diffReport struct {
	Set      string       `json:"set"`
	Compared int          `json:"compared"`
	Widened  int          `json:"widened"`
	Narrowed int          `json:"narrowed"`
	Reasons  int          `json:"reasons"`
	Changes  []diffChange `json:"changes"`
}

type diffChange struct {
	Kind      string `json:"kind"`
	File      string `json:"file,omitempty"`
	Case      string `json:"case,omitempty"`
	Principal string `json:"principal,omitempty"`
	Action    string `json:"action,omitempty"`
	Resource  string `json:"resource,omitempty"`
	Before    string `json:"before"`
	After     string `json:"after"`
}

func (a *app) policyDiffCmd() *cobra.Command {
	var (
		file, cases, schema string
		failOnWiden         bool
		limit               uint32
		rf                  readFlags
	)
	cmd := &cobra.Command{
		Use:   "diff NAME --file CANDIDATE.cedar [--cases DIR]",
		Short: "Show which requests a candidate policy set would decide differently",
		Long: `Compare a candidate text for the policy set NAME with the current one.

With --cases DIR (offline): every test case of DIR that runs against NAME is
decided under DIR's NAME.cedar and under the candidate.
Without: the server replays the requests it recently decided under NAME (a
bounded sample kept by the node that answers) against the candidate.

Changes are "widened" (deny → allow: access grows), "narrowed" (allow → deny)
or "reasons" (same decision, other determining policies). --fail-on-widen
exits 3 when anything widened.`,
		Example: `  writ policy diff prod --file prod-next.cedar --cases policies/
  writ policy diff prod --file prod-next.cedar --fail-on-widen`,
		Args: exactArgs("NAME"),
	}
	rf.add(cmd)
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "the candidate Cedar text, or - for stdin")
	f.StringVar(&cases, "cases", "", "a directory of policy sets and test cases (offline)")
	f.StringVar(&schema, "schema", "", "with --cases: a Cedar schema file (default: Writ's)")
	f.BoolVar(&failOnWiden, "fail-on-widen", false, "exit 3 when a request would be widened")
	f.Uint32Var(&limit, "limit", 100, "at most this many changes listed")
	_ = cmd.MarkFlagRequired("file")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cand, err := readInput(file, a.stdin)
		if err != nil {
			return flagErr("file", err)
		}
		rep := diffReport{Set: args[0], Changes: []diffChange{}}
		if cases != "" {
			s, err := localSchema(schema)
			if err != nil {
				return err
			}
			d, err := policytest.LoadDir(cases)
			if err != nil {
				return usagef("%v", err)
			}
			changes, compared, err := policytest.DiffCases(d, args[0], cand, s)
			if err != nil {
				return usagef("%v", err)
			}
			rep.Compared = compared
			for _, c := range changes {
				countChange(&rep, c.Change.Kind.String())
				if len(rep.Changes) < int(limit) {
					rep.Changes = append(rep.Changes, diffChange{
						Kind: c.Change.Kind.String(), File: c.File, Case: c.Case,
						Before: c.Change.Base.Reason, After: c.Change.Candidate.Reason,
					})
				}
			}
		} else {
			ro, err := rf.options()
			if err != nil {
				return err
			}
			err = a.call(func(ctx context.Context, c *clients, _ *printer, _ []string) error {
				r, err := c.policy.DiffPolicySet(ctx, connect.NewRequest(&writv1.DiffPolicySetRequest{Name: args[0], Cedar: string(cand), Limit: limit, Read: ro}))
				if err != nil {
					return err
				}
				m := r.Msg
				rep.Compared, rep.Widened, rep.Narrowed, rep.Reasons = int(m.GetReplayed()), int(m.GetWidened()), int(m.GetNarrowed()), int(m.GetReasons())
				for _, ch := range m.GetChanges() {
					rep.Changes = append(rep.Changes, diffChange{
						Kind: ch.GetKind(), Principal: ch.GetPrincipal(), Action: ch.GetAction(), Resource: ch.GetResource(),
						Before: ch.GetActive().GetReason(), After: ch.GetCandidate().GetReason(),
					})
				}
				return nil
			})(cmd, args)
			if err != nil {
				return err
			}
		}
		p, err := a.out()
		if err != nil {
			return err
		}
		if p.format.kind == "json" {
			if err := emitJSON(a.stdout, rep); err != nil {
				return err
			}
		} else {
			w := a.stdout
			for _, c := range rep.Changes {
				what := c.File + ": " + c.Case
				if c.File == "" {
					what = c.Principal + " " + c.Action + " " + c.Resource
				}
				fmt.Fprintf(w, "%-8s %s\n         before: %s\n         after:  %s\n", strings.ToUpper(c.Kind), what, c.Before, c.After)
			}
			fmt.Fprintf(w, "%d requests compared: %d widened, %d narrowed, %d other reasons\n", rep.Compared, rep.Widened, rep.Narrowed, rep.Reasons)
		}
		if failOnWiden && rep.Widened > 0 {
			return errNegative
		}
		return nil
	}
	return cmd
}

func countChange(r *diffReport, kind string) {
	switch kind {
	case "widened":
		r.Widened++
	case "narrowed":
		r.Narrowed++
	default:
		r.Reasons++
	}
}

func (a *app) policyShadowCmd() *cobra.Command {
	return group("shadow", "Evaluate a candidate policy set beside the active one (shadow mode)",
		a.shadowPutCmd(), a.shadowStatusCmd(), a.shadowPromoteCmd(), a.shadowClearCmd())
}

const shadowPrefix = "shadow/" // rpc.ShadowPrefix

func (a *app) shadowPutCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "put NAME --file CANDIDATE.cedar",
		Short: "Start (or replace) a shadow candidate for NAME",
		Long: `Store the candidate as the policy set "shadow/NAME". Every node then evaluates
it beside NAME on every decision, answers with NAME only, and counts (and
logs) every disagreement: 'writ policy shadow status' on each node.`,
		Args: exactArgs("NAME"),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the candidate Cedar text, or - for stdin")
	_ = cmd.MarkFlagRequired("file")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		src, err := readInput(file, a.stdin)
		if err != nil {
			return flagErr("file", err)
		}
		resp, err := c.admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{
			PolicySet: &writv1.PolicySet{Name: shadowPrefix + args[0], Cedar: string(src), Description: "shadow candidate for " + args[0]},
		}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			policyHeader(t, resp.Msg.GetPolicySet())
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

func (a *app) shadowStatusCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "status", Short: "This node's shadow counters", Args: noArgs}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		resp, err := c.policy.GetShadowStatus(ctx, connect.NewRequest(&writv1.GetShadowStatusRequest{}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			t.kv("node", resp.Msg.GetNodeId())
			rows := [][]string{}
			for _, s := range resp.Msg.GetSets() {
				rows = append(rows, []string{s.GetPolicySet(), "v" + u64(s.GetCandidateVersion()), u64(s.GetEvaluations()),
					u64(s.GetDisagreements()), u64(s.GetWidened()), u64(s.GetNarrowed()), u64(s.GetReasons()), u64(s.GetCandidateErrors())})
			}
			t.table([]string{"SET", "CANDIDATE", "EVALUATED", "DISAGREED", "WIDENED", "NARROWED", "REASONS", "ERRORS"}, rows)
		})
	})
	return cmd
}

func (a *app) shadowPromoteCmd() *cobra.Command {
	var expect uint64
	cmd := &cobra.Command{
		Use:   "promote NAME",
		Short: "Activate the shadow candidate as NAME's next version, then remove it",
		Args:  exactArgs("NAME"),
	}
	cmd.Flags().Uint64Var(&expect, "expect-version", 0, "fail unless NAME's active version is this")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		cand, err := c.admin.GetPolicySet(ctx, connect.NewRequest(&writv1.GetPolicySetRequest{Name: shadowPrefix + args[0]}))
		if err != nil {
			return err
		}
		cs := cand.Msg.GetPolicySet()
		resp, err := c.admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{
			PolicySet:     &writv1.PolicySet{Name: args[0], Cedar: cs.GetCedar(), Description: "promoted from " + shadowPrefix + args[0] + " v" + strconv.FormatUint(cs.GetVersion(), 10)},
			ExpectVersion: expect,
		}))
		if err != nil {
			return err
		}
		if _, err := c.admin.DeletePolicySet(ctx, connect.NewRequest(&writv1.DeletePolicySetRequest{Name: shadowPrefix + args[0]})); err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			policyHeader(t, resp.Msg.GetPolicySet())
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

func (a *app) shadowClearCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "clear NAME", Short: "Stop shadowing NAME (delete the candidate)", Args: exactArgs("NAME")}
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		resp, err := c.admin.DeletePolicySet(ctx, connect.NewRequest(&writv1.DeletePolicySetRequest{Name: shadowPrefix + args[0]}))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) { t.kv("index", resp.Msg.GetIndex()) })
	})
	return cmd
}

// serverSchema reads `writ server --schema FILE` (nil for the embedded
// schema) and checks it still describes Writ's entity model.
func serverSchema(path string) (*authz.Schema, error) {
	if path == "" {
		return nil, nil
	}
	s, err := localSchema(path)
	if err != nil {
		return nil, err
	}
	if err := s.CheckEntityModel(); err != nil {
		return nil, flagErr("schema", err)
	}
	return s, nil
}
