//go:build !race

package authz_test

const raceBuild = false
