package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gopkg.in/yaml.v3"
)

// Sink kinds.
const (
	SinkFile   = "file"
	SinkStdout = "stdout"
)

// Durability modes of a sink.
const (
	// DurabilityFsync: a must record is acknowledged once written and
	// fsynced; spooled records are fsynced after each batch. The default
	// for files.
	DurabilityFsync = "fsync"
	// DurabilityWrite: acknowledged once handed to the OS (survives a crash
	// of the process, not of the machine). The only mode for stdout; dev.
	DurabilityWrite = "write"
)

// Config is the audit configuration of one node: where each stream goes,
// how durable it is, what its filters drop, and the spool's bounds. It is
// read from YAML (`writ server --audit-config`); Effective returns it with
// every default filled in, which is what `writ server` prints and
// `writ audit config` shows.
type Config struct {
	// Dir holds the spool and the default file of each stream. Default
	// <data dir>/audit (set by the node).
	Dir string `yaml:"dir" json:"dir"`
	// DurableTimeout bounds how long a must record may wait for its sink
	// before the request fails closed. Default 2s.
	DurableTimeout time.Duration `yaml:"durable_timeout" json:"durable_timeout"`
	// CheckpointInterval: how often each stream's chain head is committed
	// to Raft when it moved. Default 30s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval" json:"checkpoint_interval"`
	// SpoolMaxBytes bounds each stream's on-disk spool of records waiting
	// for their sink. Default 64 MiB.
	SpoolMaxBytes int64 `yaml:"spool_max_bytes" json:"spool_max_bytes"`
	// QueueLen bounds the in-memory queue in front of each spool. Default 4096.
	QueueLen int `yaml:"queue_len" json:"queue_len"`
	// QueueWait bounds how long a request's spooled record (RecordBy: a
	// decision, a use, a login) may wait for room in a full queue before it
	// is dropped: back-pressure on the caller instead of a gap when the
	// records come faster than the spooler encodes them. A BatchAuthorize
	// call shares one wait among its items. Default 100ms; negative: never
	// wait (drop at once).
	QueueWait time.Duration `yaml:"queue_wait" json:"queue_wait"`
	// Streams configures human, workload and agent; a stream left out gets
	// the default (a file <dir>/<stream>.log, fsync, 100 MiB x 10).
	Streams map[Stream]*StreamConfig `yaml:"streams" json:"streams"`
}

// StreamConfig is one stream's sink and filters.
type StreamConfig struct {
	Sink        string `yaml:"sink" json:"sink"`                 // file or stdout
	Path        string `yaml:"path,omitempty" json:"path"`       // file: relative to Dir unless absolute
	Durability  string `yaml:"durability" json:"durability"`     // fsync or write
	RotateBytes int64  `yaml:"rotate_bytes" json:"rotate_bytes"` // file: rotate past this size (default 100 MiB)
	KeepFiles   int    `yaml:"keep_files" json:"keep_files"`     // file: rotated files kept (default 10)
	// Filters drop spooled records on purpose (never must records); what
	// each drops is counted in a "filtered" record.
	Filters []Filter `yaml:"filters,omitempty" json:"filters"`
}

// Filter drops the spooled records it matches, keeping SampleRate of them.
// Empty match fields match anything.
type Filter struct {
	Name    string   `yaml:"name" json:"name"`
	Types   []Type   `yaml:"types,omitempty" json:"types"`     // e.g. [use]
	Methods []string `yaml:"methods,omitempty" json:"methods"` // e.g. [Verify]
	// Decision matches allow or deny.
	Decision string `yaml:"decision,omitempty" json:"decision"`
	// HealthyOnly matches only uses of a credential whose lease is active.
	HealthyOnly bool `yaml:"healthy_only,omitempty" json:"healthy_only"`
	// SampleRate is the fraction of matching records kept, 0 to 1 (0 keeps none).
	SampleRate float64 `yaml:"sample_rate" json:"sample_rate"`
}

// ParseConfig reads a YAML config. Unknown keys are errors.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return c, nil
}

// LoadConfig reads a YAML config file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return ParseConfig(b)
}

// Effective returns c with every default filled in, validated.
func (c Config) Effective() (Config, error) {
	out := c
	if out.DurableTimeout == 0 {
		out.DurableTimeout = 2 * time.Second
	}
	if out.CheckpointInterval == 0 {
		out.CheckpointInterval = 30 * time.Second
	}
	if out.SpoolMaxBytes == 0 {
		out.SpoolMaxBytes = 64 << 20
	}
	if out.QueueLen == 0 {
		out.QueueLen = 4096
	}
	switch {
	case out.QueueWait == 0:
		out.QueueWait = 100 * time.Millisecond
	case out.QueueWait < 0:
		out.QueueWait = -1 // one spelling for "never wait" in the effective config
	}
	out.Streams = make(map[Stream]*StreamConfig, len(Streams))
	var errs []error
	for k := range c.Streams {
		if !slices.Contains(Streams, k) {
			errs = append(errs, fmt.Errorf("unknown stream %q (want human, workload or agent)", k))
		}
	}
	paths := map[string]Stream{}
	for _, name := range Streams {
		sc := StreamConfig{}
		if in := c.Streams[name]; in != nil {
			sc = *in
			sc.Filters = slices.Clone(in.Filters)
		}
		if sc.Sink == "" {
			sc.Sink = SinkFile
		}
		switch sc.Sink {
		case SinkFile:
			if sc.Path == "" {
				sc.Path = string(name) + ".log"
			}
			if sc.Durability == "" {
				sc.Durability = DurabilityFsync
			}
			if sc.RotateBytes == 0 {
				sc.RotateBytes = 100 << 20
			}
			if sc.KeepFiles == 0 {
				sc.KeepFiles = 10
			}
			abs := sc.Path
			if !filepath.IsAbs(abs) {
				abs = filepath.Join(out.Dir, abs)
			}
			if other, dup := paths[abs]; dup {
				errs = append(errs, fmt.Errorf("streams %s and %s write the same file %s: each file holds one chain", other, name, abs))
			}
			paths[abs] = name
		case SinkStdout:
			if sc.Durability == "" {
				sc.Durability = DurabilityWrite
			}
			if sc.Durability != DurabilityWrite {
				errs = append(errs, fmt.Errorf("stream %s: stdout cannot fsync: durability must be write", name))
			}
		default:
			errs = append(errs, fmt.Errorf("stream %s: sink %q: want file or stdout", name, sc.Sink))
		}
		if sc.Durability != DurabilityFsync && sc.Durability != DurabilityWrite {
			errs = append(errs, fmt.Errorf("stream %s: durability %q: want fsync or write", name, sc.Durability))
		}
		if sc.RotateBytes < 0 || sc.KeepFiles < 0 {
			errs = append(errs, fmt.Errorf("stream %s: rotate_bytes and keep_files must not be negative", name))
		}
		for i, f := range sc.Filters {
			if err := f.validate(); err != nil {
				errs = append(errs, fmt.Errorf("stream %s filter %d (%s): %w", name, i, f.Name, err))
			}
		}
		out.Streams[name] = &sc
	}
	if out.Dir == "" {
		errs = append(errs, errors.New("dir is required"))
	}
	if out.DurableTimeout < 0 || out.CheckpointInterval < 0 || out.SpoolMaxBytes < 0 || out.QueueLen < 0 {
		errs = append(errs, errors.New("durations and sizes must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return out, nil
}

// mustTypes are never filtered or spooled-only.
var mustTypes = []Type{TypeIssue, TypeRenew, TypeAdmin}

func (f Filter) validate() error {
	if f.Name == "" {
		return errors.New("name is required (it labels the filtered counts)")
	}
	if f.SampleRate < 0 || f.SampleRate > 1 {
		return fmt.Errorf("sample_rate %v: want 0..1", f.SampleRate)
	}
	if len(f.Types) == 0 {
		return errors.New("types is required: a filter names what it may drop (issue, renew and admin are never dropped)")
	}
	for _, t := range f.Types {
		if slices.Contains(mustTypes, t) || t == TypeGap || t == TypeFiltered || t == TypeStart {
			return fmt.Errorf("type %q is never filtered", t)
		}
	}
	if f.Decision != "" && f.Decision != Allow && f.Decision != Deny {
		return fmt.Errorf("decision %q: want allow or deny", f.Decision)
	}
	return nil
}

// YAML renders the config (for `writ server` and `writ audit config`).
func (c Config) YAML() string {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Sprintf("# cannot render config: %v\n", err)
	}
	return string(b)
}
