package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/writ-dev/writ/node"
)

// envGossipKey holds the gossip encryption key (base64) when --gossip-key
// and --gossip-key-file are not given.
const envGossipKey = "WRIT_GOSSIP_KEY"

// clusterFlags are `writ server`'s gossip, membership and cluster TLS flags.
type clusterFlags struct {
	gossipAddr, advertiseGossip string
	gossipKey, gossipKeyFile    string
	bootstrapExpect             int
	deadServerGrace             time.Duration
	minQuorum                   int
	tlsCert, tlsKey, tlsCA      string
	tlsServerName               string
}

func (f *clusterFlags) add(fl *pflag.FlagSet) {
	fl.StringVar(&f.gossipAddr, "gossip-addr", "", `gossip (memberlist, TCP+UDP) listen address (default: the Raft host, Raft port + 1, so 7402; "off" disables gossip)`)
	fl.StringVar(&f.advertiseGossip, "advertise-gossip", "", "gossip address other nodes dial, an IP:port (default: --advertise-raft's host with the gossip port)")
	fl.StringVar(&f.gossipKey, "gossip-key", "", "base64 gossip encryption key, 16, 24 or 32 bytes (env "+envGossipKey+", comma-separated for rotation; make one with `writ keygen`)")
	fl.StringVar(&f.gossipKeyFile, "gossip-key-file", "", "file of base64 gossip keys, one a line: the first encrypts, the others are also accepted (rotation)")
	fl.IntVar(&f.bootstrapExpect, "bootstrap-expect", 0, "form a cluster once this many servers (all started with the same value) see each other in gossip")
	fl.DurationVar(&f.deadServerGrace, "dead-server-grace", 0, "remove a voter dead in gossip this long, while quorum stays safe (default 5m; negative: never)")
	fl.IntVar(&f.minQuorum, "min-quorum", 0, "dead-server cleanup never leaves fewer voters than this (default: --bootstrap-expect, or 1)")
	fl.StringVar(&f.tlsCert, "cluster-tls-cert", "", "node certificate (PEM) for mutual TLS on the cluster (Raft) port")
	fl.StringVar(&f.tlsKey, "cluster-tls-key", "", "private key (PEM) of --cluster-tls-cert")
	fl.StringVar(&f.tlsCA, "cluster-ca", "", "CA certificate (PEM) every node certificate must chain to")
	fl.StringVar(&f.tlsServerName, "cluster-tls-server-name", "", "DNS name every node certificate must carry (optional)")
}

// apply validates the flags and fills cfg's cluster fields. raftAddr and
// advertiseRaft are the node's Raft listen and advertise addresses.
func (f *clusterFlags) apply(cfg *node.Config, getenv func(string) string) error {
	if f.bootstrapExpect < 0 {
		return usagef("--bootstrap-expect must not be negative")
	}
	if f.minQuorum < 0 {
		return usagef("--min-quorum must not be negative")
	}
	cfg.BootstrapExpect, cfg.DeadServerGrace, cfg.MinQuorum = f.bootstrapExpect, f.deadServerGrace, f.minQuorum
	switch f.gossipAddr {
	case "off":
		if f.bootstrapExpect > 0 {
			return usagef("--bootstrap-expect needs gossip; drop --gossip-addr off")
		}
	case "":
		addr, err := nextPort(cfg.RaftAddr)
		if err != nil {
			return flagErr("raft-addr", err)
		}
		cfg.GossipAddr = addr
	default:
		if _, _, err := net.SplitHostPort(f.gossipAddr); err != nil {
			return usagef("--gossip-addr %q: want host:port", f.gossipAddr)
		}
		cfg.GossipAddr = f.gossipAddr
	}
	if cfg.GossipAddr != "" {
		adv := f.advertiseGossip
		if adv == "" && cfg.AdvertiseRaft != "" {
			host, _, err := net.SplitHostPort(cfg.AdvertiseRaft)
			_, port, perr := net.SplitHostPort(cfg.GossipAddr)
			if err == nil && perr == nil {
				adv = net.JoinHostPort(host, port)
			}
		}
		cfg.AdvertiseGossip = adv
		keys, err := f.keys(getenv)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			cfg.GossipKey, cfg.GossipExtraKeys = keys[0], keys[1:]
		}
	}
	cfg.ClusterTLS = node.ClusterTLS{CertFile: f.tlsCert, KeyFile: f.tlsKey, CAFile: f.tlsCA, ServerName: f.tlsServerName}
	if (f.tlsCert != "" || f.tlsKey != "" || f.tlsCA != "" || f.tlsServerName != "") && (f.tlsCert == "" || f.tlsKey == "" || f.tlsCA == "") {
		return usagef("cluster TLS needs --cluster-tls-cert, --cluster-tls-key and --cluster-ca together")
	}
	return nil
}

// keys reads the gossip keys: the first encrypts, all decrypt (rotation).
// A key file holds one base64 key per line; the environment variable takes
// them comma-separated.
func (f *clusterFlags) keys(getenv func(string) string) ([][]byte, error) {
	if f.gossipKey != "" && f.gossipKeyFile != "" {
		return nil, usagef("--gossip-key and --gossip-key-file are exclusive")
	}
	var texts []string
	from := "--gossip-key"
	switch {
	case f.gossipKey != "":
		texts = []string{f.gossipKey}
	case f.gossipKeyFile != "":
		b, err := os.ReadFile(f.gossipKeyFile)
		if err != nil {
			return nil, usagef("--gossip-key-file: %v", err)
		}
		texts, from = strings.Split(string(b), "\n"), "--gossip-key-file"
	default:
		texts, from = strings.Split(getenv(envGossipKey), ","), envGossipKey
	}
	var keys [][]byte
	for _, text := range texts {
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, usagef("%s: not base64 (make a key with `writ keygen`)", from)
		}
		if l := len(key); l != 16 && l != 24 && l != 32 {
			return nil, usagef("%s: key is %d bytes; want 16, 24 or 32 (make one with `writ keygen`)", from, l)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// keygenCmd prints a new random gossip encryption key.
func (a *app) keygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new gossip encryption key (base64, 32 bytes)",
		Long: `Print a random 32-byte key, base64, for --gossip-key, --gossip-key-file or
` + envGossipKey + `. Every server of a cluster must hold the same key.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return markRun(err)
			}
			fmt.Fprintln(a.stdout, base64.StdEncoding.EncodeToString(key))
			return nil
		},
	}
}
