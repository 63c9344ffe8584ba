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
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "wake NODE",
		Short: "Wake a sleeping node by Wake-on-LAN, through an agent on its LAN that has a wake rule for it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			resp, err := call(ctx, http.MethodPost, f.url, agent.NodePath+"/wake", f.apiKey(), map[string]string{"node": args[0]})
			if err != nil {
				return err
			}
			resp.Body.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "sent the Wake-on-LAN packet for %s; `hearth status` shows it when it joins\n", args[0])
			return nil
		},
	}
	f.add(cmd)
	return cmd
}
