package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/agent"
)

func newWakeCmd() *cobra.Command {
	var a agentAPI
	cmd := &cobra.Command{
		Use:   "wake NODE",
		Short: "Wake a sleeping node by Wake-on-LAN, through an agent on its LAN that has a wake rule for it",
		Long: "Wake a sleeping node by Wake-on-LAN. The --agent is asked first; when it has no wake rule for\n" +
			"NODE, the other agents of its cluster are (the rule usually lives on the NAS).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			by, err := wakeThrough(ctx, &a, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sent the Wake-on-LAN packet for %s (by %s); `hearth status` shows it when it joins\n", args[0], by)
			return nil
		},
	}
	a.flags(cmd.Flags(), "an agent on the sleeping node's LAN (its API URL)")
	return cmd
}

// wakeThrough asks the --agent to wake node and, when it has no rule for it (404), the other
// agents in its cluster view; it returns the name of the agent that sent the packet.
func wakeThrough(ctx context.Context, a *agentAPI, node string) (string, error) {
	by, status, first := wakeAt(ctx, a, "", node)
	if first == nil || status != http.StatusNotFound {
		return by, first
	}
	v, err := a.cluster(ctx)
	if err != nil {
		return "", first // not in a cluster, or it does not answer: its own answer says most
	}
	var asked []string
	for _, n := range v.Nodes {
		if n.Self || n.API == "" {
			continue
		}
		asked = append(asked, n.Name)
		if by, _, err := wakeAt(ctx, a, n.API, node); err == nil {
			return by, nil
		}
	}
	if len(asked) == 0 {
		return "", first
	}
	return "", fmt.Errorf("%w; nor has any other agent of its cluster (%s): give one on %s's LAN that stays awake a wake: rule for it",
		first, strings.Join(asked, ", "), node)
}

// wakeAt asks the agent at base ("" = --agent) to wake node: the name of the agent that
// sent the packet, or its HTTP status and error.
func wakeAt(ctx context.Context, a *agentAPI, base, node string) (string, int, error) {
	resp, err := a.call(ctx, http.MethodPost, base, agent.NodePath+"/wake", map[string]string{"node": node})
	if err != nil {
		var se *statusError
		if errors.As(err, &se) {
			return "", se.status, err
		}
		return "", 0, err
	}
	defer resp.Body.Close()
	var out struct {
		By string `json:"by"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = json.Unmarshal(b, &out)
	return out.By, resp.StatusCode, nil
}
