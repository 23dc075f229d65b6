//go:build writ_nonode

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Built with -tags writ_nonode (while node/ or policies/ do not compile):
// the client commands work, the server commands say why they do not.

var errNoNode = errors.New("this writ was built without the node (tag writ_nonode)")

func (a *app) serverCmd() *cobra.Command {
	return &cobra.Command{Use: "server", Short: "Run a Writ node (not in this build)",
		RunE: func(*cobra.Command, []string) error { return markRun(errNoNode) }}
}

func (a *app) devCmd() *cobra.Command {
	return &cobra.Command{Use: "dev", Short: "Run a throwaway single-node Writ (not in this build)",
		RunE: func(*cobra.Command, []string) error { return markRun(errNoNode) }}
}
