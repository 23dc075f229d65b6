package audit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// chainOf builds n chained lines of one stream.
func chainOf(n int) [][]byte {
	var lines [][]byte
	prev := ""
	for i := 1; i <= n; i++ {
		body := fmt.Sprintf(`{"time":"2026-01-01T00:00:00Z","node":"n1","stream":"workload","type":"use","decision_id":"d%d","actor":{"id":"ci/a","human":false}}`, i)
		var line []byte
		line, prev = encodeLine(nil, uint64(i), prev, []byte(body))
		lines = append(lines, line)
	}
	return lines
}

func join(lines [][]byte) *bytes.Reader { return bytes.NewReader(bytes.Join(lines, nil)) }

func TestVerifyCatchesTampering(t *testing.T) {
	t.Parallel()
	lines := chainOf(5)
	headRep, err := Verify(join(lines), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	head := headRep[0]
	cp := []Checkpoint{{Node: "n1", Stream: StreamWorkload, Seq: 5, Hash: head.LastHash, Index: 42}}
	edit := func(i int, from, to string) [][]byte {
		out := append([][]byte(nil), lines...)
		out[i] = bytes.Replace(out[i], []byte(from), []byte(to), 1)
		return out
	}
	cases := map[string]struct {
		lines [][]byte
		opts  VerifyOptions
		want  error
		msg   string
	}{
		"intact":                  {lines: lines, opts: VerifyOptions{Checkpoints: cp}},
		"edited field":            {lines: edit(2, `"use"`, `"xse"`), want: ErrTampered, msg: "seq 3 was edited"},
		"edited hash too":         {lines: edit(2, `"d3"`, `"d9"`), want: ErrTampered, msg: "edited"},
		"removed middle":          {lines: [][]byte{lines[0], lines[1], lines[3], lines[4]}, want: ErrTampered, msg: "seq 4 follows seq 2"},
		"reordered":               {lines: [][]byte{lines[0], lines[2], lines[1], lines[3], lines[4]}, want: ErrTampered, msg: "seq 3 follows seq 1"},
		"duplicated":              {lines: [][]byte{lines[0], lines[1], lines[1], lines[2]}, want: ErrTampered, msg: "seq 2 follows seq 2"},
		"removed tail, no anchor": {lines: lines[:3]},
		"removed tail":            {lines: lines[:3], opts: VerifyOptions{Checkpoints: cp}, want: ErrTampered, msg: "ends at seq 3 but the cluster committed seq 5"},
		"rotated part":            {lines: lines[:3], opts: VerifyOptions{Checkpoints: cp, NotNewest: true}},
		"not a record":            {lines: [][]byte{[]byte("hello\n")}, want: ErrMalformed},
		"checkpoint disagrees":    {lines: lines, opts: VerifyOptions{Checkpoints: []Checkpoint{{Node: "n1", Stream: StreamWorkload, Seq: 4, Hash: strings.Repeat("0", 64)}}}, want: ErrTampered, msg: "cluster committed"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Verify(join(tc.lines), tc.opts)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err %q does not say %q", err, tc.msg)
			}
		})
	}
}

// FuzzVerify: arbitrary bytes never panic Verify, and whatever it accepts
// re-verifies to the same report.
func FuzzVerify(f *testing.F) {
	f.Add(bytes.Join(chainOf(3), nil))
	f.Add([]byte(`{"seq":1,"prev":"","hash":"00"}` + "\n"))
	f.Add([]byte("\n\n{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Verify(bytes.NewReader(b), VerifyOptions{})
		if err != nil {
			return
		}
		again, err := Verify(bytes.NewReader(b), VerifyOptions{})
		if err != nil || len(again) != len(rep) {
			t.Fatalf("second verify: %v", err)
		}
	})
}
