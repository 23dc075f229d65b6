//go:build race

package authz_test

// raceBuild: the corpus test samples under -race (make test runs the full
// corpus without -race, in make test-corpus).
const raceBuild = true
