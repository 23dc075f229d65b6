package authz_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/policies"
)

// generatePolicies writes n policies shaped like a real library: nearly all
// are scoped to other principals or resources, so they do not match the
// benchmark request, but each must still be evaluated (cedar-go evaluates
// every policy it is handed). The environment guard rail and one matching
// permit are always there.
func generatePolicies(n int) []byte {
	var b strings.Builder
	b.WriteString(`@id("env-separation") @reason("environments stay apart")
forbid (principal, action, resource) unless { resource has environment && resource.environment == principal.environment };
`)
	for i := range n - 2 {
		fmt.Fprintf(&b, "@id(\"gen-%d\") @reason(\"generated\")\n", i)
		switch i % 10 {
		case 0, 1, 2, 3:
			fmt.Fprintf(&b, `permit (principal == Workload::"svc/app-%d", action == Action::"read_secret", resource) when { resource.owner == principal.owner };`, i)
		case 4, 5:
			fmt.Fprintf(&b, `permit (principal in Team::"team-%d", action in [Action::"issue_db_credential", Action::"backup"], resource is Database) when { context has requested_ttl && context.requested_ttl <= 3600 };`, i)
		case 6, 7:
			fmt.Fprintf(&b, `permit (principal is CiJob, action == Action::"deploy", resource == Deployment::"svc-%d") when { context has ticket && context.ticket like "CHG-*" };`, i)
		case 8:
			fmt.Fprintf(&b, `forbid (principal, action == Action::"call_tool", resource == Tool::"tool-%d") unless { context has task_id };`, i)
		case 9:
			fmt.Fprintf(&b, `permit (principal is Agent, action == Action::"call_tool", resource == Tool::"tool-%d") when { principal.hasTag("model") && context has task_id };`, i)
		}
		b.WriteByte('\n')
	}
	b.WriteString(`@id("match") @reason("the benchmark's request")
permit (principal == Workload::"svc/target", action == Action::"read_secret", resource is Secret) when { resource.owner == principal.owner && context has purpose };
`)
	return []byte(b.String())
}

func benchRequest() authz.Request {
	return authz.Request{
		Identity: &fsmpb.Identity{
			Id: "svc/target", Kind: "workload", Owner: "payments", Environment: "prod",
			Attributes: map[string]string{"cluster": "prod-eu-1", "namespace": "payments"},
		},
		Role:   "target",
		Action: "read_secret",
		Resource: authz.Resource{Type: "Secret", ID: "app/payments/db", Attributes: map[string]any{
			"environment": "prod", "owner": "payments", "path": "app/payments/db",
		}},
		Context: map[string]any{"purpose": "serve", "requested_ttl": float64(900), "task_id": "t-1"},
	}
}

// BenchmarkDecideIndexed and BenchmarkDecideWholeSet decide the same
// request against the same generated sets: Decide (only the policies whose
// scope matches) and DecideAll (every policy).
func BenchmarkDecideIndexed(b *testing.B) {
	benchDecide(b, (*authz.PolicySet).Decide)
}

func BenchmarkDecideWholeSet(b *testing.B) {
	benchDecide(b, (*authz.PolicySet).DecideAll)
}

func benchDecide(b *testing.B, decide func(*authz.PolicySet, authz.Request) (authz.Decision, error)) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			ps, err := authz.Compile("bench", 1, generatePolicies(n))
			if err != nil {
				b.Fatal(err)
			}
			if ps.Len() != n {
				b.Fatalf("generated %d policies, want %d", ps.Len(), n)
			}
			req := benchRequest()
			b.ReportAllocs()
			for b.Loop() {
				d, err := decide(ps, req)
				if err != nil || !d.Allowed || len(d.Determining) != 1 || d.Determining[0].ID != "match" || len(d.Errors) != 0 {
					b.Fatalf("decision %+v, %v", d, err)
				}
			}
		})
	}
}

func BenchmarkEngineGetHit(b *testing.B) {
	e := authz.NewEngine()
	ps := &fsmpb.PolicySet{Name: "bench", Version: 1, Cedar: string(generatePolicies(1000))}
	want, err := e.Get(ps)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if got, err := e.Get(ps); err != nil || got != want {
			b.Fatal("cache miss")
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	text := generatePolicies(1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := authz.Compile("bench", 1, text); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecide puts the indexed and the whole-set evaluation side by
// side in one run: sub-benchmarks policies=N/indexed and policies=N/whole-set
// decide the same request against the same set, compiled by an Engine as
// on a node (so both use the principal cache).
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		ps, err := authz.NewEngine().Get(&fsmpb.PolicySet{Name: "bench", Version: 1, Cedar: string(generatePolicies(n))})
		if err != nil {
			b.Fatal(err)
		}
		for _, v := range []struct {
			name   string
			decide func(*authz.PolicySet, authz.Request) (authz.Decision, error)
		}{{"indexed", (*authz.PolicySet).Decide}, {"whole-set", (*authz.PolicySet).DecideAll}} {
			b.Run(fmt.Sprintf("policies=%d/%s", n, v.name), func(b *testing.B) {
				req := benchRequest()
				b.ReportAllocs()
				cpu := startCPU()
				for b.Loop() {
					d, err := v.decide(ps, req)
					if err != nil || !d.Allowed || len(d.Determining) != 1 || d.Determining[0].ID != "match" {
						b.Fatalf("decision %+v, %v", d, err)
					}
				}
				cpu.report(b)
			})
		}
	}
}

// BenchmarkActivate measures what activating a 10,000-policy set costs a
// node: validate (compile + schema validation, on the node that receives
// the write, before proposing) and compile (every node, on the first
// decision under the new version: parse, name, index).
func BenchmarkActivate(b *testing.B) {
	text := generatePolicies(10000)
	schema, err := authz.ParseSchema("writ.cedarschema", policies.Schema)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("policies=10000/validate", func(b *testing.B) {
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			if _, err := schema.Validate("bench", 1, text); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b)
	})
	b.Run("policies=10000/compile", func(b *testing.B) {
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			if _, err := authz.Compile("bench", 1, text); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b)
	})
}

// BenchmarkDecideEngine is BenchmarkDecide's indexed case through an
// Engine, whose sets share the principal cache (as on a node).
func BenchmarkDecideEngine(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			ps, err := authz.NewEngine().Get(&fsmpb.PolicySet{Name: "bench", Version: 1, Cedar: string(generatePolicies(n))})
			if err != nil {
				b.Fatal(err)
			}
			req := benchRequest()
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				d, err := ps.Decide(req)
				if err != nil || !d.Allowed || len(d.Determining) != 1 || d.Determining[0].ID != "match" {
					b.Fatalf("decision %+v, %v", d, err)
				}
			}
			cpu.report(b)
		})
	}
}

// cpuClock measures the process's CPU time (user + system, every thread:
// GC included) across a benchmark loop. On a shared machine wall time per
// op includes waiting for a core; CPU time per op does not.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{start: processCPU()} }

// report adds cpu-ns/op; call it right after the b.Loop loop.
func (c cpuClock) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-c.start)/float64(b.N), "cpu-ns/op")
	}
}
