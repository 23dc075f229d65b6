package node

// Test helpers shared with package node_test.
type TestCA = testCA

var NewTestCA = newTestCA
