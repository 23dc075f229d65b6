package authz_test

import (
	"testing"

	"github.com/writ-dev/writ/authz/authztest"
	"github.com/writ-dev/writ/policies"
)

// exampleSets returns the embedded example sets by name.
func exampleSets(tb testing.TB) map[string][]byte {
	tb.Helper()
	sets, err := policies.Sets()
	if err != nil {
		tb.Fatal(err)
	}
	m := make(map[string][]byte, len(sets))
	for _, s := range sets {
		m[s.Name] = s.Cedar
	}
	return m
}

// TestDecisionCases runs this package's cases and the example library's
// cases under every evaluator variant.
func TestDecisionCases(t *testing.T) {
	t.Parallel()
	files := append(authztest.Load(t, "testdata/*.yaml"), authztest.Load(t, "../policies/testdata/*.yaml")...)
	authztest.Run(t, files, exampleSets(t), authztest.Variants())
}
