package credential

// CacheLen reports how many verified tokens v holds.
func CacheLen(v *Verifier) int {
	if v.tokens == nil {
		return 0
	}
	return v.tokens.len()
}
