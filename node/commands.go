package node

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

var randReader = rand.Reader

func randomHex(r io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// newBootstrapCommand makes the cluster's one-time initial entry: its id, the
// admin token hash, the HMAC key and the first signing key. Randomness is
// drawn here, on the proposing node, never in Apply.
func newBootstrapCommand(r io.Reader, adminToken string, now time.Time) (*fsmpb.Command, error) {
	clusterID, err := randomHex(r, 8)
	if err != nil {
		return nil, err
	}
	hmacKey := make([]byte, 32)
	if _, err := io.ReadFull(r, hmacKey); err != nil {
		return nil, err
	}
	key, err := credential.NewSigningKey(r, now)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	reqID, err := randomHex(rand.Reader, 16)
	if err != nil {
		return nil, err
	}
	return &fsmpb.Command{
		Header: &fsmpb.Header{RequestId: "bootstrap-" + reqID},
		Payload: &fsmpb.Command_Bootstrap{Bootstrap: &fsmpb.Bootstrap{
			ClusterId:        clusterID,
			AdminTokenSha256: authn.HashAdminToken(adminToken),
			HmacKey:          hmacKey,
			SigningKey:       key,
		}},
	}, nil
}

func registerCommand(n *fsmpb.Node) *fsmpb.Command {
	reqID, _ := randomHex(rand.Reader, 16)
	return &fsmpb.Command{
		Header:  &fsmpb.Header{RequestId: "register-" + reqID},
		Payload: &fsmpb.Command_RegisterNode{RegisterNode: &fsmpb.RegisterNode{Node: n}},
	}
}

func removeCommand(id string) *fsmpb.Command {
	reqID, _ := randomHex(rand.Reader, 16)
	return &fsmpb.Command{
		Header:  &fsmpb.Header{RequestId: "remove-" + reqID},
		Payload: &fsmpb.Command_RemoveNode{RemoveNode: &fsmpb.RemoveNode{NodeId: id}},
	}
}
