package main

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/internal/telemetry"
)

// observabilityFlags are the audit and tracing flags of `writ server` and `writ dev`.
type observabilityFlags struct {
	auditConfig   string
	auditDir      string
	auditStdout   bool
	traceEndpoint string
	traceSample   float64
}

func (f *observabilityFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.auditConfig, "audit-config", "", "audit configuration file (YAML: sinks, durability, filters per stream; see docs/operations.md)")
	fl.StringVar(&f.auditDir, "audit-dir", "", "audit directory: spool and default files (default: <data dir>/audit)")
	fl.BoolVar(&f.auditStdout, "audit-stdout", false, "send every audit stream to stdout (durability write) instead of files")
	fl.StringVar(&f.traceEndpoint, "trace-endpoint", "", "turn on OpenTelemetry tracing, exporting OTLP/HTTP to this collector (e.g. http://127.0.0.1:4318)")
	fl.Float64Var(&f.traceSample, "trace-sample-ratio", 1, "fraction of new traces sampled (parent decisions are honoured)")
}

// audit returns the node's audit config with defaults filled in, validated.
func (f *observabilityFlags) audit(dataDir string) (*audit.Config, error) {
	var cfg audit.Config
	if f.auditConfig != "" {
		var err error
		if cfg, err = audit.LoadConfig(f.auditConfig); err != nil {
			return nil, usagef("--audit-config: %v", err)
		}
	}
	if f.auditDir != "" {
		cfg.Dir = f.auditDir
	}
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(dataDir, "audit")
	}
	if f.auditStdout {
		cfg.Streams = map[audit.Stream]*audit.StreamConfig{}
		for _, s := range audit.Streams {
			cfg.Streams[s] = &audit.StreamConfig{Sink: audit.SinkStdout}
		}
	}
	eff, err := cfg.Effective()
	if err != nil {
		return nil, usagef("audit config: %v", err)
	}
	return &eff, nil
}

func (f *observabilityFlags) tracing() (telemetry.TracingConfig, error) {
	if f.traceSample < 0 || f.traceSample > 1 {
		return telemetry.TracingConfig{}, usagef("--trace-sample-ratio %v: want 0..1", f.traceSample)
	}
	return telemetry.TracingConfig{Endpoint: f.traceEndpoint, SampleRatio: f.traceSample}, nil
}

// printAuditConfig shows the effective audit configuration at start, so an
// operator sees what is recorded where and what filters drop: a text block,
// or with --log-format json one log record (so log shippers parse it).
func printAuditConfig(w io.Writer, log *slog.Logger, format string, cfg *audit.Config) {
	if format == "json" {
		log.Info("audit configuration (effective)", "config", cfg.YAML())
		return
	}
	fmt.Fprintf(w, "Audit configuration (effective; `writ audit config` shows it too):\n%s\n", cfg.YAML())
}

// auditBanner tells a dev user where the audit records go.
func auditBanner(cfg *audit.Config) string {
	s := "Audit records (hash-chained JSON lines, one file per stream; check with 'writ audit verify FILE'):\n"
	for _, name := range audit.Streams {
		sc := cfg.Streams[name]
		where := "stdout"
		if sc.Sink == audit.SinkFile {
			where = sc.Path
			if !filepath.IsAbs(where) {
				where = filepath.Join(cfg.Dir, where)
			}
		}
		s += fmt.Sprintf("  %-9s %s\n", string(name)+":", where)
	}
	return s + "Metrics: " + "GET /metrics on the API address.\n\n"
}
