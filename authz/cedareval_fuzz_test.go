package authz

import (
	"errors"
	"testing"
)

// FuzzEvalCedar: any policies, entities and request bytes either evaluate,
// with the indexed and the whole-set answers equal, or fail with
// ErrCompile or ErrInvalidRequest. Never a panic. Seeds also in
// testdata/fuzz/FuzzEvalCedar.
func FuzzEvalCedar(f *testing.F) {
	f.Add(`permit (principal in Group::"g", action, resource);`,
		`[{"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": [{"type": "Group", "id": "g"}]}]`,
		`{"principal": "User::\"a\"", "action": "Action::\"r\"", "resource": "Doc::\"d\""}`)
	f.Add(`forbid (principal, action, resource) when { resource.locked };`,
		`[{"uid": {"type": "Doc", "id": "d"}, "attrs": {"locked": true, "ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}}, "parents": [{"type": "Doc", "id": "d"}]}]`,
		`{"principal": {"type": "User", "id": "a"}, "action": {"__entity": {"type": "Action", "id": "r"}}, "resource": {"type": "Doc", "id": "d"}, "context": {"n": 1}}`)
	f.Add(``, `[{`, `{"principal": 3}`)
	f.Add(`permit (principal, action, resource);`, ``, `{"principal": "User::\"a\"", "action": "Action::\"r\"", "resource": "Doc::\"d\"", "extra": 1}`)
	f.Fuzz(func(t *testing.T, policies, entities, request string) {
		set, err := CompileCedar("fuzz", []byte(policies))
		if err != nil {
			if !errors.Is(err, ErrCompile) {
				t.Fatalf("compile error %v does not wrap ErrCompile", err)
			}
			return
		}
		in := CedarInput{Set: set, Entities: []byte(entities), Request: []byte(request)}
		got, err := EvalCedarJSON(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		in.WholeSet = true
		want, err := EvalCedarJSON(in)
		if err != nil {
			t.Fatal(err)
		}
		if got.Allowed != want.Allowed || len(got.Reasons) != len(want.Reasons) || len(got.Errors) != len(want.Errors) {
			t.Fatalf("indexed %+v, whole set %+v", got, want)
		}
	})
}
