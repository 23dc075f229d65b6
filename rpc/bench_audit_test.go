package rpc_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// BenchmarkAuthorizeAudit measures Authorize throughput with parallel
// callers over loopback HTTP/1.1 on one in-process node (100 policies),
// without an audit log and with one (every decision spooled and written,
// hash-chained, to the workload file with fsync per batch). Compare the
// ns/op of audit=off and audit=on: the difference is auditing's cost.
func BenchmarkAuthorizeAudit(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "audit=off"
		if on {
			name = "audit=on"
		}
		b.Run(name, func(b *testing.B) {
			c := nodetest.New(b, 1, nodetest.Options{Configure: func(m *nodetest.Member, cfg *node.Config) {
				if on {
					cfg.Audit = &audit.Config{Dir: filepath.Join(m.DataDir, "audit")}
				}
			}})
			ctx := context.Background()
			admin := c.Admin(0)
			if _, err := admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: generatedPolicies(100)}})); err != nil {
				b.Fatal(err)
			}
			if _, err := admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{Id: "ci/a", Kind: "ci_job", Owner: "t", Environment: "prod"}})); err != nil {
				b.Fatal(err)
			}
			role, err := admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{Name: "a", Environment: "prod", Identity: "ci/a", DefaultTtlSeconds: 3600, MaxTtlSeconds: 3600}}))
			if err != nil {
				b.Fatal(err)
			}
			sid, err := admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: "a"}))
			if err != nil {
				b.Fatal(err)
			}
			ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-1"})
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			client := writv1connect.NewAuthzServiceClient(hc, "http://"+c.Members[0].APIAddr)
			issued, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(&writv1.AuthorizeAndIssueRequest{
				Proof:  &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: role.Msg.GetRole().GetRoleId(), SecretId: sid.Msg.GetSecretId()}}},
				Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket},
			}))
			if err != nil {
				b.Fatal(err)
			}
			req := &writv1.AuthorizeRequest{Credential: issued.Msg.GetCredential(), Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket}
			b.ReportAllocs()
			b.SetParallelism(8) // 8 callers per core
			cpu0 := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Authorize(ctx, connect.NewRequest(req))
					if err != nil || !resp.Msg.GetDecision().GetAllowed() {
						b.Errorf("authorize: %v %v", err, resp)
						return
					}
				}
			})
			b.StopTimer()
			if on {
				waitAuditDrained(b, c)
				b.ReportMetric(gauge(c, "writ_audit_dropped_total"), "audit-drops")
			}
			// CPU time of the whole process (server, client and audit
			// goroutines) per call: robust to other load on the machine,
			// unlike ns/op.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// waitAuditDrained waits until member 0's audit queue and spool are empty,
// so a benchmark's CPU figure counts the audit writer's work for its records.
func waitAuditDrained(b *testing.B, c *nodetest.Cluster) {
	b.Helper()
	nodetest.Eventually(b, time.Minute, "audit queue and spool drained", func() error {
		if n := gauge(c, "writ_audit_spool_depth_records") + gauge(c, "writ_audit_queue_depth"); n > 0 {
			return fmt.Errorf("%v records queued or spooled", n)
		}
		return nil
	})
}

// processCPU is this process's user+system CPU time in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// gauge sums a metric's values across its series on member 0.
func gauge(c *nodetest.Cluster, name string) float64 {
	mfs, _ := c.Members[0].Node.Registry().Gather()
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return v
}
