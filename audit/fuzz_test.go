package audit

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig: any bytes either parse and validate, or fail with
// ErrConfig; never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("dir: /x\nstreams:\n  workload:\n    filters: [{name: f, types: [use], sample_rate: 0.5}]\n"))
	f.Add([]byte("durable_timeout: 2s\nstreams: {human: {sink: stdout}}\n"))
	f.Add([]byte("streams: [1, 2]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if c.Dir == "" {
			c.Dir = "/x"
		}
		if eff, err := c.Effective(); err == nil {
			if _, err := ParseConfig([]byte(eff.YAML())); err != nil {
				t.Fatalf("effective config does not parse back: %v\n%s", err, eff.YAML())
			}
		}
	})
}

// FuzzSpoolSegment: a spool segment with arbitrary content (a crash, a
// disk error) opens and drains without a panic.
func FuzzSpoolSegment(f *testing.F) {
	var good []byte
	for _, r := range []string{`{"a":1}`, `{"b":2}`} {
		good = binary.BigEndian.AppendUint32(good, uint32(len(r)))
		good = append(good, r...)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "workload-000000000000.spool"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openSpool(dir, "workload", 1<<20)
		if err != nil {
			return
		}
		defer s.close()
		for range 1000 {
			recs, n, _, err := s.take(make(chan [][]byte, 1), 256, 64<<10)
			if err != nil || len(recs) == 0 {
				break
			}
			s.commit(n, len(recs))
		}
	})
}
