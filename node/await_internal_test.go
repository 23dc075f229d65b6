package node

import "testing"

// TestAnsweredWrites: an address covers an index once a write answered at
// that index or above; index 0 (no entry) is never covered; past
// maxAnswered addresses the memory starts over (a peer then gets its push).
func TestAnsweredWrites(t *testing.T) {
	var a answeredWrites
	for _, tc := range []struct {
		name  string
		addr  string
		index uint64
		want  bool
	}{
		{"nothing noted", "n1:7401", 5, false},
		{"index zero", "n1:7401", 0, false},
	} {
		if got := a.covers(tc.addr, tc.index); got != tc.want {
			t.Errorf("%s: covers(%s, %d) = %v", tc.name, tc.addr, tc.index, got)
		}
	}
	a.note("n1:7401", 10)
	a.note("n1:7401", 7) // an older answer never lowers it
	for _, tc := range []struct {
		addr  string
		index uint64
		want  bool
	}{
		{"n1:7401", 10, true},
		{"n1:7401", 3, true},
		{"n1:7401", 11, false},
		{"n2:7401", 3, false},
		{"n1:7401", 0, false},
	} {
		if got := a.covers(tc.addr, tc.index); got != tc.want {
			t.Errorf("covers(%s, %d) = %v, want %v", tc.addr, tc.index, got, tc.want)
		}
	}
	for i := range maxAnswered {
		a.note(string(rune('a'+i%26))+string(rune('a'+i/26)), 1)
	}
	if a.covers("n1:7401", 10) {
		t.Error("the map was not cleared past maxAnswered entries")
	}
}
