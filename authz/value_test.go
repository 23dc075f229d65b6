package authz

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

func TestToValue(t *testing.T) {
	t.Parallel()
	uid := types.NewEntityUID("Secret", "s")
	cases := []struct {
		name string
		in   any
		want types.Value
	}{
		{"string", "x", types.String("x")},
		{"bool", true, types.True},
		{"integral float", float64(900), types.Long(900)},
		{"negative integral float", float64(-3), types.Long(-3)},
		{"2^53", float64(1 << 53), types.Long(1 << 53)},
		{"largest float below 2^63", math.Nextafter(1<<63, 0), types.Long(int64(math.Nextafter(1<<63, 0)))},
		{"-2^63", float64(-1 << 63), types.Long(math.MinInt64)},
		{"float32", float32(7), types.Long(7)},
		{"int", 5, types.Long(5)},
		{"int64", int64(math.MaxInt64), types.Long(math.MaxInt64)},
		{"uint64", uint64(math.MaxInt64), types.Long(math.MaxInt64)},
		{"uint32", uint32(1), types.Long(1)},
		{"json.Number", json.Number("42"), types.Long(42)},
		{"set", []any{"a", float64(1), true}, types.NewSet(types.String("a"), types.Long(1), types.True)},
		{"string slice", []string{"a", "b", "a"}, types.NewSet(types.String("a"), types.String("b"))},
		{"empty set", []any{}, types.NewSet()},
		{"record", map[string]any{"a": "x", "n": float64(2)}, types.NewRecord(types.RecordMap{"a": types.String("x"), "n": types.Long(2)})},
		{"string map", map[string]string{"a": "x"}, types.NewRecord(types.RecordMap{"a": types.String("x")})},
		{"nested", map[string]any{"chain": []any{map[string]any{"id": "svc/a", "ttl": float64(60)}}},
			types.NewRecord(types.RecordMap{"chain": types.NewSet(types.NewRecord(types.RecordMap{"id": types.String("svc/a"), "ttl": types.Long(60)}))})},
		{"cedar value", uid, uid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := toValue(c.in, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestToValueRejects(t *testing.T) {
	t.Parallel()
	deep := any("leaf")
	for range MaxValueDepth + 1 {
		deep = []any{deep}
	}
	cases := []struct {
		name string
		in   map[string]any
		want string
	}{
		{"fraction", map[string]any{"ttl": 1.5}, "context.ttl: 1.5 is not an integer"},
		{"NaN", map[string]any{"x": math.NaN()}, "context.x: NaN"},
		{"Inf", map[string]any{"x": math.Inf(1)}, "context.x: +Inf"},
		{"2^63", map[string]any{"x": float64(1 << 63)}, "context.x: 9.223372036854776e+18"},
		{"uint64 overflow", map[string]any{"x": uint64(math.MaxUint64)}, "context.x: 18446744073709551615 is larger"},
		{"json.Number fraction", map[string]any{"x": json.Number("1.0")}, "context.x: 1.0"},
		{"null", map[string]any{"x": nil}, "context.x: null"},
		{"nested fraction", map[string]any{"a": map[string]any{"b": []any{float64(1), 0.25}}}, "context.a.b[1]: 0.25"},
		{"unsupported", map[string]any{"x": struct{}{}}, "context.x: unsupported value of Go type struct {}"},
		{"too deep", map[string]any{"x": deep}, "nested more than 16 levels"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := recordFromMap("context", c.in, nil, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestRecordFromMapEmpty(t *testing.T) {
	t.Parallel()
	for _, m := range []map[string]any{nil, {}} {
		r, err := recordFromMap("context", m, nil, nil)
		if err != nil || r.Len() != 0 {
			t.Fatalf("recordFromMap(%v) = %v, %v", m, r, err)
		}
	}
}

// FuzzContext feeds arbitrary JSON through the conversion: it must return a
// value or an error, never panic.
func FuzzContext(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"ttl": 900}`, `{"ttl": 1.5}`, `{"a": {"b": [1, "x", true, null]}}`,
		`{"n": 1e300}`, `{"n": -9223372036854775808}`, `{"s": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			return
		}
		_, _ = recordFromMap("context", m, nil, nil)
	})
}

// TestConvertedContext checks that a context value handed over already
// converted (Request.Converted) decides exactly as the same value converted
// by Decide, and that Decide takes the converted form when it is given.
func TestConvertedContext(t *testing.T) {
	t.Parallel()
	ps, err := Compile("set", 1, []byte(`@id("role") permit (principal, action, resource) when { context.auth.role == "deploy" && context.ticket == "CHG-1" };`))
	if err != nil {
		t.Fatal(err)
	}
	ident := &fsmpb.Identity{Id: "ci/a", Kind: "ci_job"}
	auth := map[string]any{"method": "credential", "role": "deploy"}
	req := Request{Identity: ident, Action: "deploy", Resource: Resource{Type: "Deployment", ID: "api"},
		Context: map[string]any{"ticket": "CHG-1", "auth": auth}}
	plain, err := ps.Decide(req)
	if err != nil {
		t.Fatal(err)
	}
	cv, err := ConvertValue(auth)
	if err != nil {
		t.Fatal(err)
	}
	req.Converted = map[string]Converted{"auth": cv}
	conv, err := ps.Decide(req)
	if err != nil {
		t.Fatal(err)
	}
	if !plain.Allowed || !conv.Allowed || plain.Reason != conv.Reason {
		t.Errorf("plain %+v, converted %+v: want both allowed alike", plain, conv)
	}
	// The converted form wins over Context's value: a different role in it
	// must change the decision.
	other, err := ConvertValue(map[string]any{"method": "credential", "role": "other"})
	if err != nil {
		t.Fatal(err)
	}
	req.Converted = map[string]Converted{"auth": other}
	if dec, err := ps.Decide(req); err != nil || dec.Allowed {
		t.Errorf("Decide with another converted role = %+v, %v; want a deny", dec, err)
	}
	if _, err := ConvertValue(map[string]any{"x": nil}); err == nil {
		t.Error("ConvertValue of a null accepted it")
	}
}
