package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/agent"
)

func newWakeCmd() *cobra.Command {
	var a agentAPI
	cmd := &cobra.Command{
		Use:   "wake NODE",
		Short: "Wake a sleeping node by Wake-on-LAN, through an agent on its LAN that has a wake rule for it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			resp, err := a.call(ctx, http.MethodPost, "", agent.NodePath+"/wake", map[string]string{"node": args[0]})
			if err != nil {
				return err
			}
			resp.Body.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "sent the Wake-on-LAN packet for %s; `hearth status` shows it when it joins\n", args[0])
			return nil
		},
	}
	a.flags(cmd.Flags(), "an agent on the sleeping node's LAN (its API URL)")
	return cmd
}
