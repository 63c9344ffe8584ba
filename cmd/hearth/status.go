package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/router"
)

func newStatusCmd() *cobra.Command {
	var a agentAPI
	var watch bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster: nodes, health, slots, load, warm and available models",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			for {
				view, err := a.cluster(cmd.Context())
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
	a.flags(cmd.Flags(), "any agent's API URL")
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&every, "every", 2*time.Second, "refresh interval with --watch")
	return cmd
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
	if len(v.Asleep) > 0 {
		// A sleeping node is not in the cluster, so it has no row; its wake rule is why it
		// is expected at all.
		fmt.Fprintf(w, "asleep or off (wake rules of %s): %s; `hearth wake NODE` wakes one\n", v.Self, strings.Join(v.Asleep, ", "))
	}
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
