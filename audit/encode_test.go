package audit

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func decodeAny(t *testing.T, b []byte) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return m
}

// TestAppendEventMatchesEncodingJSON: the hand-written encoder produces the
// object encoding/json would, for every field and odd strings.
func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	for name, ev := range map[string]*Event{
		"empty": {Time: ts},
		"full":  benchEvent(),
		"every field": {
			Time: ts, Node: "n1", Stream: StreamHuman, Type: TypeAdmin, Phase: PhaseResult, Method: "PutRole", RequestID: "r", DecisionID: "d",
			Actor: Actor{ID: "admin:x", Kind: "admin", Human: true}, AuthMethod: "admin_token", Action: "a", Resource: &Resource{Type: "T", ID: "i"},
			Target: "role/x", Context: map[string]any{"n": nil, "b": true, "f": 1.5, "big": 1e21, "i": int64(-7), "l": []any{"x", 2.0, map[string]any{"k": "v"}}},
			Decision: Deny, Reason: "why", Policies: []string{"p1", "p2"}, PolicySet: "prod", PolicyVersion: 9, LeaseID: "l", AppliedIndex: 77,
			Error: &Error{Code: "unavailable", Reason: "audit_unavailable"}, Hashes: map[string]string{"b": "2", "a": "1"},
			Gap: &Gap{Dropped: 3, Reason: DropSpoolFull}, Filtered: map[string]uint64{"z": 1, "y": 2},
			Items: []Item{
				{Index: 0, Action: "deploy", Resource: &Resource{Type: "Deployment", ID: "api"}, Context: map[string]any{"ticket": "CHG-1"},
					Decision: Allow, Reason: "allowed by p1", Policies: []string{"p1"}, PolicySet: "prod", PolicyVersion: 3},
				{Index: 1},
				{Index: 7, Action: "x\"y", Error: &Error{Code: "invalid_argument", Reason: "bad_resource"}},
			},
		},
		"batch": {
			Time: ts, Type: TypeUse, Method: "BatchAuthorize", DecisionID: "d_b", Decision: Deny,
			Items: []Item{{Index: 0, Decision: Deny, Reason: "outside the credential's scope"}, {Index: 1, Error: &Error{Code: "unauthenticated"}}},
		},
		"odd strings": {
			Time: ts, Reason: "quote\" back\\ nl\n tab\t ctl\x01 html<&> bad\xff utf8 é ☃ \u2028",
			Actor:   Actor{ID: "\x00"},
			Context: map[string]any{"k\"ey": "\x7f", "nan": math.NaN()},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := decodeAny(t, appendEvent(nil, ev))
			ref := *ev
			if v, ok := ref.Context["nan"]; ok && math.IsNaN(v.(float64)) {
				ref.Context = map[string]any{"k\"ey": "\x7f", "nan": "NaN"} // encoding/json refuses NaN
			}
			want, err := json.Marshal(&ref)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(decodeAny(t, want), got); d != "" {
				t.Errorf("(-encoding/json +appendEvent):\n%s", d)
			}
		})
	}
}

// FuzzAppendString: any string encodes to JSON that decodes to the same
// string (invalid UTF-8 as U+FFFD, as encoding/json does).
func FuzzAppendString(f *testing.F) {
	f.Add("plain")
	f.Add("\"\\\n\x00\xff\u2028é")
	f.Fuzz(func(t *testing.T, s string) {
		var got string
		if err := json.Unmarshal(appendString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want, _ := json.Marshal(s)
		var ref string
		_ = json.Unmarshal(want, &ref)
		if got != ref {
			t.Fatalf("%q decodes to %q, encoding/json's to %q", s, got, ref)
		}
	})
}

// TestEncodeAllocatesOnce: a stream's records are encoded into one
// allocation each once the stream has seen a record like them. With a fixed
// 512-byte start, an Authorize record (about 580 bytes) grew once: two
// allocations, 1,408 bytes.
func TestEncodeAllocatesOnce(t *testing.T) {
	s := &stream{}
	ev := benchEvent()
	ev.Time, ev.Node, ev.Stream = time.Date(2026, 12, 7, 15, 0, 0, 123456789, time.UTC), "n1", StreamWorkload
	first := s.encode(ev)
	if allocs := testing.AllocsPerRun(100, func() { s.encode(ev) }); allocs != 1 {
		t.Errorf("encode: %v allocations per record, want 1", allocs)
	}
	again := s.encode(ev)
	if string(again) != string(first) {
		t.Errorf("encodings differ:\n%s\n%s", first, again)
	}
	if cap(again) > len(again)+len(again)/4 {
		t.Errorf("buffer %d bytes for a %d-byte record", cap(again), len(again))
	}
	batch := *ev
	batch.Items = make([]Item, 40)
	if b := s.encode(&batch); cap(b) < 512+256*40 {
		t.Errorf("batch record buffer %d, want room for its items", cap(b))
	}
}
