package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/router"
)

func newStatusCmd() *cobra.Command {
	var agentURL, key string
	var watch bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster: nodes, health, slots, load, warm and available models",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if key == "" {
				key = os.Getenv("HEARTH_API_KEY")
			}
			out := cmd.OutOrStdout()
			for {
				view, err := fetchCluster(cmd.Context(), agentURL, key)
				if watch {
					fmt.Fprint(out, "\033[H\033[2J") // clear the terminal between refreshes
					fmt.Fprintf(out, "%s  every %s  (Ctrl-C to stop)\n\n", time.Now().Format(time.TimeOnly), every)
				}
				if err != nil {
					if !watch {
						return err
					}
					fmt.Fprintf(out, "error: %v\n", err)
				} else {
					renderCluster(out, view)
				}
				if !watch {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(every):
				}
			}
		},
	}
	cmd.Flags().StringVar(&agentURL, "agent", "http://127.0.0.1:11500", "any agent's API URL")
	cmd.Flags().StringVar(&key, "key", "", "API key for the agent (default $HEARTH_API_KEY)")
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&every, "every", 2*time.Second, "refresh interval with --watch")
	return cmd
}

func fetchCluster(ctx context.Context, agentURL, key string) (router.ClusterView, error) {
	var view router.ClusterView
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(agentURL, "/")+"/hearth/v1/cluster", nil)
	if err != nil {
		return view, fmt.Errorf("--agent %q: %w", agentURL, err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return view, fmt.Errorf("cannot reach the agent at %s: %w (is `hearth agent` running? pass --agent URL)", agentURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return view, fmt.Errorf("reading the cluster view from %s: %w", agentURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		return view, fmt.Errorf("the agent at %s answered %s: %s", agentURL, resp.Status, e.Error)
	}
	if err := json.Unmarshal(body, &view); err != nil {
		return view, fmt.Errorf("the agent at %s sent an unexpected cluster view: %w", agentURL, err)
	}
	return view, nil
}

// renderCluster prints one line per node; "*" marks the node that answered.
func renderCluster(w io.Writer, v router.ClusterView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tBACKEND\tSTORAGE\tSLOTS\tIN FLIGHT\tQUEUED\tWARM\tMODELS")
	for _, n := range v.Nodes {
		name := n.Name
		if n.Self {
			name += " *"
		}
		backend, storage, slots, load := "-", "-", "-", "-"
		if n.Role == "serve" {
			backend, storage = okWord(n.Backend), okWord(n.StorageOK)
			slots = fmt.Sprint(n.Slots)
			load = fmt.Sprint(n.InFlight)
			if n.Mine > n.InFlight {
				load = fmt.Sprint(n.Mine)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", name, n.Role, backend, storage, slots, load, n.Queued,
			list(n.Warm), list(n.Models))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d node(s); %d request(s) waiting at %s\n", len(v.Nodes), v.Queued, v.Self)
	if t := v.Tunnel; t != nil {
		if t.Connected {
			fmt.Fprintf(w, "tunnel to %s: connected since %s\n", t.Relay, t.Since.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintf(w, "tunnel to %s: NOT connected: %s\n", t.Relay, t.LastError)
		}
	}
	for _, n := range v.Nodes {
		if n.Problem != "" {
			fmt.Fprintf(w, "%s: %s\n", n.Name, n.Problem)
		}
	}
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "DOWN"
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}
