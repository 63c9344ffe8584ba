package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hearthlab/hearth/router"
)

func newModelsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "models",
		Short: "The cluster's models: list, pull, remove, prewarm, and check the shared store",
	}
	cmd.AddCommand(newModelsLsCmd(), newModelsPullCmd(), newModelsRmCmd(), newModelsPrewarmCmd(), newModelsDoctorCmd())
	return cmd
}

// modelRow is one model of the cluster, wherever it is.
type modelRow struct {
	name   string
	size   int64
	stores []string // nodes whose store holds it
	ollama []string // nodes whose Ollama lists it
	loaded []string
}

func modelRows(v router.ClusterView) []*modelRow {
	rows := map[string]*modelRow{}
	get := func(name string) *modelRow {
		key := router.NormalizeModel(name)
		if r, ok := rows[key]; ok {
			return r
		}
		r := &modelRow{name: name}
		rows[key] = r
		return r
	}
	for _, n := range v.Nodes {
		for _, m := range n.Stored {
			r := get(m.Name)
			r.stores = append(r.stores, n.Name)
			r.size = max(r.size, m.Size)
		}
		for _, m := range n.Models {
			r := get(m)
			r.ollama = append(r.ollama, n.Name)
			r.size = max(r.size, n.Sizes[m])
		}
		for _, m := range n.Warm {
			r := get(m)
			r.loaded = append(r.loaded, n.Name)
		}
	}
	out := make([]*modelRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *modelRow) int { return strings.Compare(a.name, b.name) })
	return out
}

func renderModels(w io.Writer, v router.ClusterView) {
	rows := modelRows(v)
	if len(rows) == 0 {
		fmt.Fprintln(w, "no models in the cluster yet: pull one with `hearth models pull NAME`")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tSIZE\tON STORE OF\tOLLAMA ON\tLOADED ON")
	for _, r := range rows {
		size := "-"
		if r.size > 0 {
			size = humanize.Bytes(uint64(r.size))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.name, size, list(r.stores), list(r.ollama), list(r.loaded))
	}
	tw.Flush()
}

func newModelsLsCmd() *cobra.Command {
	var a agentAPI
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "Every model of the cluster: its size, which stores hold it, where it is loaded now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := a.cluster(cmd.Context())
			if err != nil {
				return err
			}
			renderModels(cmd.OutOrStdout(), v)
			return nil
		},
	}
	a.flags(cmd.Flags(), "any agent's API URL")
	return cmd
}

func newModelsRmCmd() *cobra.Command {
	var a agentAPI
	var node string
	cmd := &cobra.Command{
		Use:   "rm MODEL",
		Short: "Delete a model from a node's store (a shared store: from every node that shares it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			resp, err := a.call(ctx, http.MethodDelete, "", "/api/delete"+nodeQuery(node), map[string]string{"model": args[0]})
			if err != nil {
				return err
			}
			resp.Body.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s%s\n", args[0], onNode(node))
			return nil
		},
	}
	a.flags(cmd.Flags(), "any agent's API URL")
	cmd.Flags().StringVar(&node, "node", "", "the node whose Ollama deletes it (default: the agent's choice)")
	return cmd
}

func nodeQuery(node string) string {
	if node == "" {
		return ""
	}
	return "?node=" + url.QueryEscape(node)
}

func onNode(node string) string {
	if node == "" {
		return ""
	}
	return " on " + node
}

func newModelsPullCmd() *cobra.Command {
	var a agentAPI
	var node string
	cmd := &cobra.Command{
		Use:   "pull MODEL",
		Short: "Download a model into a node's store, showing Ollama's progress",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.call(cmd.Context(), http.MethodPost, "", "/api/pull"+nodeQuery(node),
				map[string]any{"model": args[0], "stream": true})
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return showPull(cmd.OutOrStdout(), resp.Body, isTerminal(cmd.OutOrStdout()))
		},
	}
	a.flags(cmd.Flags(), "any agent's API URL")
	cmd.Flags().StringVar(&node, "node", "", "the node whose Ollama pulls it (default: the agent's choice)")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// pullLine is one line of Ollama's /api/pull progress.
type pullLine struct {
	Status    string `json:"status"`
	Digest    string `json:"digest"`
	Total     int64  `json:"total"`
	Completed int64  `json:"completed"`
	Error     string `json:"error"`
}

// showPull renders Ollama's pull progress: a bar redrawn in place on a terminal, otherwise
// a line per status and per tenth of each layer.
func showPull(w io.Writer, r io.Reader, tty bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	last, lastTenth, drawn := "", -1, false
	for sc.Scan() {
		var p pullLine
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return fmt.Errorf("unexpected progress line %q: %w", sc.Text(), err)
		}
		if p.Error != "" {
			if drawn {
				fmt.Fprintln(w)
			}
			return fmt.Errorf("pull failed: %s", p.Error)
		}
		if p.Total > 0 {
			tenth := int(10 * p.Completed / p.Total)
			if tty {
				fmt.Fprintf(w, "\r%s %s", p.Status, progressBar(p.Completed, p.Total, 30))
				drawn = true
			} else if p.Status != last || tenth != lastTenth {
				fmt.Fprintf(w, "%s %d%% (%s of %s)\n", p.Status, 10*tenth, humanize.Bytes(uint64(p.Completed)), humanize.Bytes(uint64(p.Total)))
			}
			last, lastTenth = p.Status, tenth
			continue
		}
		if p.Status != last {
			if drawn {
				fmt.Fprintln(w)
				drawn = false
			}
			fmt.Fprintln(w, p.Status)
			last, lastTenth = p.Status, -1
		}
	}
	if drawn {
		fmt.Fprintln(w)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("the pull stopped: %w", err)
	}
	if last != "success" {
		return fmt.Errorf("the pull ended without success (last: %q)", last)
	}
	return nil
}

// progressBar is "[#######-------]  45% 1.2 GB/2.6 GB".
func progressBar(done, total int64, width int) string {
	if total <= 0 {
		return ""
	}
	filled := int(int64(width) * min(done, total) / total)
	return fmt.Sprintf("[%s%s] %3d%% %s/%s", strings.Repeat("#", filled), strings.Repeat("-", width-filled),
		100*min(done, total)/total, humanize.Bytes(uint64(done)), humanize.Bytes(uint64(total)))
}
