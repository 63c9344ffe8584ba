package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/storage"
	"github.com/hearthlab/hearth/router"
)

// storeNodes are the nodes of v with a model store, or just the one named.
func storeNodes(v router.ClusterView, name string) ([]router.NodeView, error) {
	var out []router.NodeView
	var all []string
	known := false
	for _, n := range v.Nodes {
		all = append(all, n.Name)
		known = known || n.Name == name
		if (name == "" || n.Name == name) && n.Storage != nil {
			out = append(out, n)
		}
	}
	switch {
	case name != "" && !known:
		return nil, fmt.Errorf("no node %q in the cluster (nodes: %s): give --node one of them", name, strings.Join(all, ", "))
	case name != "" && len(out) == 0:
		return nil, fmt.Errorf("node %q has no model store in the cluster view (nodes: %s); set its storage.models_dir", name, strings.Join(all, ", "))
	case len(out) == 0:
		return nil, fmt.Errorf("no node of the cluster has a model store: set storage.models_dir in the agents' agent.yaml")
	}
	return out, nil
}

func nodeAPI(n router.NodeView, fallback string) string {
	if n.API != "" {
		return n.API
	}
	return fallback
}

func newModelsPrewarmCmd() *cobra.Command {
	var a agentAPI
	var node, keepAlive string
	var load bool
	cmd := &cobra.Command{
		Use:   "prewarm MODEL",
		Short: "Read a model's blobs from the store into each node's page cache, so that its first load does not wait on NFS",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.cluster(cmd.Context())
			if err != nil {
				return err
			}
			nodes, err := storeNodes(v, node)
			if err != nil {
				return err
			}
			want := router.NormalizeModel(args[0])
			done := 0
			for _, n := range nodes {
				if n.Role != "serve" && node == "" {
					continue // a NAS that only routes loads nothing
				}
				has := false
				for _, m := range n.Stored {
					has = has || router.NormalizeModel(m.Name) == want
				}
				if !has {
					continue
				}
				if err := a.prewarmOn(cmd.Context(), cmd.OutOrStdout(), nodeAPI(n, a.url), n.Name, args[0], isTerminal(cmd.OutOrStdout())); err != nil {
					return err
				}
				if load {
					if err := a.loadOn(cmd.Context(), cmd.OutOrStdout(), nodeAPI(n, a.url), n.Name, args[0], keepAlive); err != nil {
						return err
					}
				}
				done++
			}
			if done == 0 && node != "" {
				return fmt.Errorf("node %s's store does not hold %s: `hearth models ls` shows where models are", node, args[0])
			}
			if done == 0 {
				return fmt.Errorf("no serving node's store holds %s: `hearth models ls` shows where models are", args[0])
			}
			return nil
		},
	}
	a.flags(cmd.Flags(), "any agent's API URL")
	cmd.Flags().StringVar(&node, "node", "", "only this node (default: every serving node whose store holds the model)")
	cmd.Flags().BoolVar(&load, "load", false, "then load it into each node's Ollama too")
	cmd.Flags().StringVar(&keepAlive, "keep-alive", "30m", "with --load: how long Ollama keeps it loaded")
	return cmd
}

func (a *agentAPI) loadOn(ctx context.Context, w io.Writer, api, node, model, keepAlive string) error {
	resp, err := a.call(ctx, http.MethodPost, api, agent.NodePath+"/load", map[string]string{"model": model, "keep_alive": keepAlive})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Seconds float64 `json:"seconds"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return fmt.Errorf("%s: unexpected answer to the load: %w", node, err)
	}
	fmt.Fprintf(w, "%s: %s loaded in %.1fs (kept %s)\n", node, model, out.Seconds, keepAlive)
	return nil
}

func (a *agentAPI) prewarmOn(ctx context.Context, w io.Writer, api, node, model string, tty bool) error {
	resp, err := a.call(ctx, http.MethodPost, api, agent.NodePath+"/prewarm", map[string]string{"model": model})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var last agent.PrewarmProgress
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			return fmt.Errorf("%s: unexpected progress line %q", node, sc.Text())
		}
		rate := humanize.Bytes(uint64(last.BytesPerSecond)) + "/s"
		switch {
		case last.Status == "error":
			return fmt.Errorf("%s: prewarm %s: %s", node, model, last.Error)
		case tty:
			fmt.Fprintf(w, "\r%s: %s %s %s", node, last.Model, progressBar(last.Completed, last.Total, 30), rate)
		case last.Status == "success":
		default:
			fmt.Fprintf(w, "%s: %s %s of %s at %s\n", node, last.Model, humanize.Bytes(uint64(last.Completed)), humanize.Bytes(uint64(last.Total)), rate)
		}
	}
	if tty {
		fmt.Fprintln(w)
	}
	if last.Status != "success" {
		return fmt.Errorf("%s: the prewarm of %s stopped: %v", node, model, sc.Err())
	}
	fmt.Fprintf(w, "%s: %s in the page cache (%s at %.2f GB/s)\n", node, last.Model, humanize.Bytes(uint64(last.Completed)), last.BytesPerSecond/1e9)
	return nil
}

func newModelsDoctorCmd() *cobra.Command {
	var a agentAPI
	var readMB int
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the model store on every node: mounted, permissions, UIDs, free space, read speed and cold-load times",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := a.cluster(cmd.Context())
			if err != nil {
				return err
			}
			nodes, err := storeNodes(v, "")
			if err != nil {
				return err
			}
			var reports []storage.Report
			var failed []string
			for _, n := range nodes {
				rep, err := a.storageReport(cmd.Context(), nodeAPI(n, a.url), readMB)
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s: %v", n.Name, err))
					continue
				}
				reports = append(reports, rep)
			}
			problems := renderDoctor(cmd.OutOrStdout(), v, reports, failed)
			if problems > 0 {
				return fmt.Errorf("%d problem(s) found", problems)
			}
			return nil
		},
	}
	a.flags(cmd.Flags(), "any agent's API URL")
	cmd.Flags().IntVar(&readMB, "read-mb", 256, "MiB of the largest blob to read on each node to time the store (0: no read)")
	return cmd
}

func (a *agentAPI) storageReport(ctx context.Context, api string, readMB int) (storage.Report, error) {
	var rep storage.Report
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	resp, err := a.call(ctx, http.MethodGet, api, fmt.Sprintf("%s/storage?read_mb=%d", agent.NodePath, readMB), nil)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&rep); err != nil {
		return rep, fmt.Errorf("unexpected storage report: %w", err)
	}
	return rep, nil
}

// renderDoctor prints each node's store, the checks across nodes and the nodes of v it could
// not check; it returns how many problems it found.
func renderDoctor(w io.Writer, v router.ClusterView, reports []storage.Report, failed []string) int {
	problems := len(failed)
	for _, rep := range reports {
		h := rep.Health
		fmt.Fprintf(w, "%s: %s on %s (mounted %s, healthy %s)\n", rep.Node, rep.Dir, orDash(h.FSType), yesNo(h.Mounted), yesNo(h.Healthy))
		if u := rep.OllamaUser; u.ReadOnly {
			fmt.Fprintf(w, "  no Ollama here; the agent reads the store as uid %d (gids %v)\n", u.UID, u.GIDs)
		} else {
			fmt.Fprintf(w, "  ollama runs as %s (uid %d, gids %v)\n", u.Name, u.UID, u.GIDs)
		}
		if sp := rep.Space; sp != nil {
			fmt.Fprintf(w, "  free space: %s of %s\n", humanize.Bytes(uint64(sp.Free)), humanize.Bytes(uint64(sp.Total)))
		}
		if r := rep.Read; r != nil {
			note := ""
			if r.Cached {
				note = " (may be the page cache's speed: the kernel did not drop the file's pages)"
			}
			fmt.Fprintf(w, "  read speed: %.2f GB/s over %s%s\n", r.BytesPerSecond/1e9, humanize.Bytes(uint64(r.Bytes)), note)
		}
		if len(rep.Models) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  MODEL\tSIZE\tCOLD LOAD")
			for _, m := range rep.Models {
				cold := "-"
				if m.Seconds > 0 {
					cold = (time.Duration(m.Seconds * float64(time.Second))).Round(100 * time.Millisecond).String()
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", m.Name, humanize.Bytes(uint64(m.Size)), cold)
			}
			tw.Flush()
		}
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "  PROBLEM: %s\n", p)
			problems++
		}
	}
	for _, p := range append(uidProblems(reports), pruneProblems(v)...) {
		fmt.Fprintf(w, "PROBLEM: %s\n", p)
		problems++
	}
	for _, n := range notChecked(v) {
		fmt.Fprintf(w, "not checked: %s\n", n)
	}
	for _, f := range failed {
		fmt.Fprintf(w, "PROBLEM: %s\n", f)
	}
	if problems == 0 {
		fmt.Fprintf(w, "all %d store(s) look fine\n", len(reports))
	}
	return problems
}

// uidProblems compares the Ollama user and the store's owner across nodes: NFS (sec=sys)
// checks numbers, so the same name with another UID is another user.
func uidProblems(reports []storage.Report) []string {
	byDir := map[string][]storage.Report{}
	var dirs []string
	for _, r := range reports {
		if r.OllamaUser.ReadOnly {
			continue // no Ollama there: its agent's UID need not match
		}
		if _, ok := byDir[storeKey(r)]; !ok {
			dirs = append(dirs, storeKey(r))
		}
		byDir[storeKey(r)] = append(byDir[storeKey(r)], r)
	}
	var out []string
	for _, dir := range dirs { // in the order of the reports
		group := byDir[dir]
		if len(group) < 2 {
			continue
		}
		first := group[0]
		for _, r := range group[1:] {
			if r.OllamaUser.UID != first.OllamaUser.UID {
				out = append(out, fmt.Sprintf("Ollama's UID differs: %d on %s, %d on %s; over NFS the store sees numbers, so give the %s user the same UID on every node",
					first.OllamaUser.UID, first.Node, r.OllamaUser.UID, r.Node, first.OllamaUser.Name))
			}
			if a, b := storeOwner(first), storeOwner(r); a != "" && b != "" && a != b {
				out = append(out, fmt.Sprintf("the store's owner differs: %s on %s, %s on %s (an NFS idmap or a different export?)", a, first.Node, b, r.Node))
			}
		}
	}
	return out
}

// pruneProblems are the prune owners that do not add up (storage.prune_owner): more than
// one in the cluster, or none among nodes that share a store.
func pruneProblems(v router.ClusterView) []string {
	var owners, dirs []string
	sharing := map[string][]string{}
	owned := map[string]bool{}
	for _, n := range v.Nodes {
		if n.PruneOwner {
			owners = append(owners, n.Name)
		}
		if n.Storage == nil {
			continue
		}
		if _, ok := sharing[n.Storage.Dir]; !ok {
			dirs = append(dirs, n.Storage.Dir)
		}
		sharing[n.Storage.Dir] = append(sharing[n.Storage.Dir], n.Name)
		owned[n.Storage.Dir] = owned[n.Storage.Dir] || n.PruneOwner
	}
	var out []string
	if len(owners) > 1 {
		out = append(out, fmt.Sprintf("more than one node has storage.prune_owner: true (%s): each one's Ollama deletes the blobs it finds unused when it starts, which may be a download another node has in progress; set it on one node only",
			strings.Join(owners, ", ")))
	}
	for _, dir := range dirs {
		if nodes := sharing[dir]; len(nodes) > 1 && !owned[dir] {
			out = append(out, fmt.Sprintf("%s share the store %s but none has storage.prune_owner: true: their managed Ollamas run with OLLAMA_NOPRUNE=1, "+
				"so none deletes unused blobs when it starts, nor the old layers a re-pull or re-create of a model leaves behind, and those stay on the store for good "+
				"(`hearth models rm` still deletes a model's own blobs); set storage.prune_owner: true on the one node that is on most",
				strings.Join(nodes, ", "), dir))
		}
	}
	return out
}

// notChecked names the nodes the doctor did not check, and why: those of the cluster without
// a store, and those of the wake rules that are not in the cluster now.
func notChecked(v router.ClusterView) []string {
	var out []string
	for _, n := range v.Nodes {
		if n.Storage == nil {
			out = append(out, fmt.Sprintf("%s (no model store: storage.models_dir is not set there)", n.Name))
		}
	}
	for _, n := range v.Asleep {
		out = append(out, fmt.Sprintf("%s (not in the cluster now: asleep or off; `hearth wake %s` wakes it)", n, n))
	}
	return out
}

// storeKey groups nodes that see one store; the directory is the usual key (every node
// mounts the share at the same path).
func storeKey(r storage.Report) string { return r.Dir }

func storeOwner(r storage.Report) string {
	for _, a := range r.Access {
		if a.Path == r.Dir && a.Mode != "" {
			return fmt.Sprintf("%d:%d", a.UID, a.GID)
		}
	}
	return ""
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
