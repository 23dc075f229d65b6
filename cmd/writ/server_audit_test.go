package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-dev/writ/audit"
)

func TestAuditFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "audit.yaml")
	if err := os.WriteFile(good, []byte("checkpoint_interval: 5s\nstreams:\n  agent: {sink: stdout}\n  workload:\n    filters: [{name: hv, types: [use], methods: [Verify], decision: allow, healthy_only: true, sample_rate: 0.01}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("streams:\n  workload:\n    filters: [{name: x, types: [issue], sample_rate: 0}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		flags   observabilityFlags
		wantErr string
		check   func(*audit.Config) bool
	}{
		{"defaults", observabilityFlags{}, "", func(c *audit.Config) bool {
			return c.Dir == filepath.Join("/data", "audit") && c.Streams[audit.StreamHuman].Sink == audit.SinkFile && c.Streams[audit.StreamHuman].Durability == audit.DurabilityFsync
		}},
		{"file", observabilityFlags{auditConfig: good}, "", func(c *audit.Config) bool {
			return c.Streams[audit.StreamAgent].Sink == audit.SinkStdout && len(c.Streams[audit.StreamWorkload].Filters) == 1 && c.CheckpointInterval.String() == "5s"
		}},
		{"stdout", observabilityFlags{auditStdout: true, auditDir: "/x"}, "", func(c *audit.Config) bool {
			return c.Dir == "/x" && c.Streams[audit.StreamWorkload].Sink == audit.SinkStdout
		}},
		{"never filter issuance", observabilityFlags{auditConfig: bad}, "never filtered", nil},
		{"missing file", observabilityFlags{auditConfig: filepath.Join(dir, "nope.yaml")}, "--audit-config", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := tc.flags.audit("/data")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || exitCode(err) != exitUsage {
					t.Fatalf("err = %v (exit %d), want a usage error saying %q", err, exitCode(err), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Errorf("effective config:\n%s", cfg.YAML())
			}
		})
	}
	if _, err := (&observabilityFlags{traceSample: 2}).tracing(); err == nil {
		t.Error("--trace-sample-ratio 2 accepted")
	}
}
