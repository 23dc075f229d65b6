package nodetest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// History checking. A History records the client operations of a fault run
// (issue, verify, revoke) with call and return times, and Check tests them
// against LeaseModel with porcupine. See node/DESIGN.md ("History checker").

// OpKind is the kind of a recorded operation.
type OpKind string

// Operation kinds.
const (
	OpIssue  OpKind = "issue"
	OpVerify OpKind = "verify"
	OpRevoke OpKind = "revoke"
)

// Outcomes of an operation.
const (
	// OutOK: an issue or revoke was acknowledged.
	OutOK = "ok"
	// OutUnknown: an issue or revoke failed; it may still take effect, at any
	// time after its call (its return time is taken as the end of time).
	OutUnknown = "unknown"
	// Verify outcomes: what the node said about the lease.
	OutActive   = "active"
	OutRevoked  = "revoked"
	OutNotFound = "unknown_lease"
)

// Op is one recorded client operation.
type Op struct {
	Client int    `json:"client"`
	Kind   OpKind `json:"kind"`
	Lease  string `json:"lease"`
	// Node is the member a verify was answered by ("" for writes).
	Node string `json:"node,omitempty"`
	// Output is one of the Out* values.
	Output string `json:"output"`
	// Call and Return are nanoseconds since the history began.
	Call   int64  `json:"call"`
	Return int64  `json:"return"`
	Detail string `json:"detail,omitempty"`
}

// Event is a fault injected during the run, for the report.
type Event struct {
	What  string `json:"what"`
	Start int64  `json:"start"`
	End   int64  `json:"end"`
}

// History is a concurrent recorder of operations. Safe for concurrent use.
type History struct {
	start  time.Time
	mu     sync.Mutex
	ops    []Op
	events []Event
}

// NewHistory starts an empty history; times are relative to now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the history's clock: nanoseconds since it began (monotonic).
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records op. A failed write (OutUnknown) gets an infinite return time.
func (h *History) Add(op Op) {
	if op.Output == OutUnknown {
		op.Return = math.MaxInt64
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// Fault records an injected fault spanning [start, end].
func (h *History) Fault(what string, start, end int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, Event{What: what, Start: start, End: end})
}

// Ops returns a copy of the recorded operations.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Lease states in LeaseModel.
const (
	stAbsent = iota
	stActive
	stRevoked
)

// LeaseModel is the sequential specification Writ promises, per lease and
// per answering node:
//
//   - issue makes a lease active (ids are unique: issuing an existing id is illegal);
//   - revoke makes it revoked; a failed revoke may or may not have;
//   - a verify reports the state: active, revoked, or unknown_lease before the issue.
//
// Verifies are served from the answering node's own state (stale reads with
// min_index = the lease's issue index), so different nodes may apply a
// revocation at different moments while Revoke is in flight: the history is
// split per (lease, node), each partition holding the lease's writes and the
// verifies one node answered. Within a partition the node's state moves in
// log order at moments inside each write's interval (a node that misses a
// revocation's interval fails closed, and a failed read is not recorded),
// so each partition must be linearizable. In particular a verify that starts
// after Revoke returned and says "active" is illegal on every node.
func LeaseModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionByLeaseAndNode,
		Init:      func() []any { return []any{stAbsent} },
		Step: func(state, input, output any) []any {
			s := state.(int)
			op := input.(Op)
			out := output.(string)
			switch op.Kind {
			case OpIssue:
				if s != stAbsent {
					return nil
				}
				if out == OutUnknown {
					return []any{stAbsent, stActive}
				}
				return []any{stActive}
			case OpRevoke:
				if out == OutUnknown {
					return []any{s, stRevoked}
				}
				if s == stAbsent {
					return nil
				}
				return []any{stRevoked}
			case OpVerify:
				want := map[int]string{stAbsent: OutNotFound, stActive: OutActive, stRevoked: OutRevoked}[s]
				if out == want {
					return []any{s}
				}
			}
			return nil
		},
		DescribeOperation: func(input, output any) string {
			op := input.(Op)
			if op.Kind == OpVerify {
				return fmt.Sprintf("verify(%s)@%s -> %s", short(op.Lease), op.Node, output)
			}
			return fmt.Sprintf("%s(%s) -> %s", op.Kind, short(op.Lease), output)
		},
		DescribeState: func(state any) string {
			return [...]string{"absent", "active", "revoked"}[state.(int)]
		},
	}
	return nm.ToModel()
}

func short(id string) string {
	if len(id) > 10 {
		return id[len(id)-8:]
	}
	return id
}

func partitionByLeaseAndNode(history []porcupine.Operation) [][]porcupine.Operation {
	writes := map[string][]porcupine.Operation{}
	reads := map[string]map[string][]porcupine.Operation{}
	for _, o := range history {
		op := o.Input.(Op)
		if op.Kind == OpVerify {
			if reads[op.Lease] == nil {
				reads[op.Lease] = map[string][]porcupine.Operation{}
			}
			reads[op.Lease][op.Node] = append(reads[op.Lease][op.Node], o)
		} else {
			writes[op.Lease] = append(writes[op.Lease], o)
		}
	}
	var out [][]porcupine.Operation
	for _, lease := range slices.Sorted(maps.Keys(writes)) {
		if len(reads[lease]) == 0 {
			out = append(out, writes[lease])
			continue
		}
		for _, n := range slices.Sorted(maps.Keys(reads[lease])) {
			out = append(out, append(slices.Clone(writes[lease]), reads[lease][n]...))
		}
	}
	return out
}

// Check tests the history against LeaseModel within timeout. When it is not
// linearizable (or the checker runs out of time) it writes a report under
// dir: history.json (every operation and fault), history.html (porcupine's
// visualization, with the faults as annotations); and returns an error
// naming the dir. Verifies of leases whose issue was never recorded are
// dropped (their issue failed, so nothing constrains them).
func (h *History) Check(timeout time.Duration, dir string) (porcupine.CheckResult, error) {
	ops := h.Ops()
	issued := map[string]bool{}
	for _, op := range ops {
		if op.Kind == OpIssue {
			issued[op.Lease] = true
		}
	}
	var hist []porcupine.Operation
	for _, op := range ops {
		if op.Lease == "" || !issued[op.Lease] {
			continue
		}
		hist = append(hist, porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Call, Output: op.Output, Return: op.Return})
	}
	model := LeaseModel()
	res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
	if res == porcupine.Ok {
		return res, nil
	}
	if err := h.writeReport(dir, model, info); err != nil {
		return res, fmt.Errorf("history %s; writing the report: %w", res, err)
	}
	return res, fmt.Errorf("history %s: report in %s", res, dir)
}

func (h *History) writeReport(dir string, model porcupine.Model, info porcupine.LinearizationInfo) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	h.mu.Lock()
	data, err := json.MarshalIndent(struct {
		Ops    []Op    `json:"ops"`
		Faults []Event `json:"faults"`
	}{h.ops, h.events}, "", " ")
	events := slices.Clone(h.events)
	h.mu.Unlock()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "history.json"), data, 0o644); err != nil {
		return err
	}
	slices.SortFunc(events, func(a, b Event) int { return cmp.Compare(a.Start, b.Start) })
	var ann []porcupine.Annotation
	for _, e := range events {
		ann = append(ann, porcupine.Annotation{Tag: "faults", Start: e.Start, End: e.End, Description: e.What, BackgroundColor: "#f6c6c6"})
	}
	info.AddAnnotations(ann)
	return porcupine.VisualizePath(model, info, filepath.Join(dir, "history.html"))
}
