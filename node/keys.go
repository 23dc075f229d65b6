package node

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

// maintainKeys runs the leader's share of signing-key rotation: put a new key
// when the newest is older than Config.KeyRotationPeriod (if set), and
// retire every key whose overlap window has passed. Each is one replicated
// entry; the keyring lives in the FSM, so a new leader simply carries on.
func (n *Node) maintainKeys(now time.Time) {
	keys := n.fsm.View().SigningKeys()
	if len(keys) == 0 {
		return // not bootstrapped yet
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	if p := n.cfg.KeyRotationPeriod; p > 0 && !now.Before(time.Unix(0, keys[0].GetCreatedUnixNano()).Add(p)) {
		key, err := credential.NewSigningKey(rand.Reader, now)
		if err == nil {
			err = n.proposeOne(ctx, keyCommand("rotate-", &fsmpb.Command{Payload: &fsmpb.Command_PutSigningKey{PutSigningKey: &fsmpb.PutSigningKey{
				Key: key, RetireOthersAfterNanos: int64(n.cfg.KeyOverlap),
			}}}))
		}
		if err != nil {
			n.log.Warn("rotate signing key", "err", err)
			return
		}
		n.log.Info("signing key rotated", "kid", key.GetKid(), "overlap", n.cfg.KeyOverlap)
		keys = n.fsm.View().SigningKeys()
	}
	for _, k := range keys[1:] { // never the newest: it signs
		if r := k.GetRetireUnixNano(); r != 0 && !now.Before(time.Unix(0, r)) {
			if err := n.proposeOne(ctx, keyCommand("retire-", &fsmpb.Command{Payload: &fsmpb.Command_RetireSigningKey{
				RetireSigningKey: &fsmpb.RetireSigningKey{Kid: k.GetKid()},
			}})); err != nil {
				n.log.Warn("retire signing key", "kid", k.GetKid(), "err", err)
				return
			}
			n.log.Info("signing key retired", "kid", k.GetKid())
		}
	}
}

func keyCommand(prefix string, cmd *fsmpb.Command) *fsmpb.Command {
	id, _ := randomHex(rand.Reader, 16)
	cmd.Header = &fsmpb.Header{RequestId: prefix + id}
	return cmd
}
