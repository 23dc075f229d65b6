package node

import "errors"

var (
	// ErrClusterTLS: the cluster TLS files cannot be loaded.
	ErrClusterTLS = errors.New("cluster tls")
	// ErrGossip: gossip (memberlist) could not start or join.
	ErrGossip = errors.New("gossip")
	// ErrLastVoter: the only voter cannot leave gracefully; stop it instead.
	ErrLastVoter = errors.New("this node is the only voter; it cannot leave the cluster (stop it instead)")
)
