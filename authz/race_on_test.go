//go:build race

package authz_test

// raceBuild: the corpus test is skipped under -race (make test-corpus runs
// it without).
const raceBuild = true
