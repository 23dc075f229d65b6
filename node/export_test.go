package node

// Test helpers shared with package node_test.
type TestCA = testCA

var NewTestCA = newTestCA

// FirstLogIndex is the first index still in the Raft log store.
func (n *Node) FirstLogIndex() uint64 {
	i, _ := n.store.FirstIndex()
	return i
}
