package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/rag"
)

// ragClient talks to an agent's RAG API (under ragAPI).
type ragClient struct{ agentAPI }

const ragAPI = "/rag/v1"

func newRagCmd() *cobra.Command {
	c := &ragClient{}
	cmd := &cobra.Command{
		Use:   "rag",
		Short: "Collections of home documents: index folders and files, search them, chat with them (models rag:NAME)",
	}
	c.flags(cmd.PersistentFlags(), "the agent's API URL (the one holding the collection)")
	cmd.AddCommand(ragLs(c), ragCreate(c), ragAdd(c), ragSync(c, "sync"), ragSync(c, "reindex"), ragRm(c), ragQuery(c), ragChat(c))
	return cmd
}

func ragLs(c *ragClient) *cobra.Command {
	return &cobra.Command{
		Use: "ls", Short: "List the collections", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct{ Collections []rag.Info }
			if err := c.callJSON(cmd.Context(), http.MethodGet, "", ragAPI+"/collections", nil, &out); err != nil {
				return err
			}
			renderCollections(cmd.OutOrStdout(), out.Collections)
			return nil
		},
	}
}

func renderCollections(w io.Writer, cols []rag.Info) {
	if len(cols) == 0 {
		fmt.Fprintln(w, "no collections yet: `hearth rag create NAME --path DIR` indexes a folder")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMODEL\tDOCUMENTS\tCHUNKS\tEMBED MODEL\tFOLDERS")
	for _, ci := range cols {
		folders := strings.Join(ci.Paths, ", ")
		if folders == "" {
			folders = "(uploads only)"
		}
		fmt.Fprintf(tw, "%s\trag:%s\t%d\t%d\t%s\t%s\n", ci.Name, ci.Name, ci.Documents, ci.Chunks, ci.EmbedModel, folders)
	}
	tw.Flush()
	for _, ci := range cols {
		if ci.NeedsReindex != "" {
			fmt.Fprintf(w, "%s: %s\n", ci.Name, ci.NeedsReindex)
		}
		if p := ci.Syncing; p != nil {
			fmt.Fprintf(w, "%s: syncing, file %d of %d%s\n", ci.Name, p.Index, p.Total, fileStep(*p))
		}
	}
}

// fileStep is ": NAME, embedded D of N chunks" for a step of a sync, as far as it is known.
func fileStep(p rag.Progress) string {
	s := ""
	if p.File != "" {
		s = ": " + p.File
	}
	if p.FileChunks > 0 {
		s += fmt.Sprintf(", embedded %d of %d chunks", p.FileEmbedded, p.FileChunks)
	}
	return s
}

func ragCreate(c *ragClient) *cobra.Command {
	var paths, include, exclude []string
	var noSync bool
	cmd := &cobra.Command{
		Use: "create NAME [--path DIR]...", Short: "Make a collection, bound to folders with --path, and index them", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for i, p := range paths {
				abs, err := filepath.Abs(p)
				if err != nil {
					return fmt.Errorf("--path %q: %w", p, err)
				}
				paths[i] = abs
			}
			cc := rag.CollectionConfig{Name: args[0], Paths: paths, Include: include, Exclude: exclude}
			var info rag.Info
			if err := c.callJSON(cmd.Context(), http.MethodPost, "", ragAPI+"/collections", cc, &info); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created collection %s: chat with it as model rag:%s\n", info.Name, info.Name)
			if noSync || len(paths) == 0 {
				return nil
			}
			return c.stream(cmd, "/collections/"+url.PathEscape(args[0])+"/sync")
		},
	}
	cmd.Flags().StringSliceVar(&paths, "path", nil, "folder to index (repeatable; the agent must be able to read it)")
	cmd.Flags().StringSliceVar(&include, "include", nil, `only files matching these globs ("*.pdf", "notes/**")`)
	cmd.Flags().StringSliceVar(&exclude, "exclude", nil, `leave out files matching these globs ("**/tmp/**")`)
	cmd.Flags().BoolVar(&noSync, "no-sync", false, "do not index the folders now")
	return cmd
}

func ragRm(c *ragClient) *cobra.Command {
	return &cobra.Command{
		Use: "rm NAME", Short: "Delete a collection (hearth's indexes; never your files)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := c.callJSON(cmd.Context(), http.MethodDelete, "", ragAPI+"/collections/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted collection %s\n", args[0])
			return nil
		},
	}
}

func ragSync(c *ragClient, verb string) *cobra.Command {
	short := "Index new and changed files of a collection's folders, drop deleted ones (all collections without NAME)"
	use := "sync [NAME]"
	args := cobra.MaximumNArgs(1)
	if verb == "reindex" {
		short = "Embed a collection again with rag.embed_model, from the text already extracted"
		use, args = "reindex NAME", cobra.ExactArgs(1)
	}
	return &cobra.Command{
		Use: use, Short: short, Args: args,
		RunE: func(cmd *cobra.Command, args []string) error {
			names := args
			if len(names) == 0 {
				var out struct{ Collections []rag.Info }
				if err := c.callJSON(cmd.Context(), http.MethodGet, "", ragAPI+"/collections", nil, &out); err != nil {
					return err
				}
				for _, ci := range out.Collections {
					if len(ci.Paths) > 0 {
						names = append(names, ci.Name)
					}
				}
			}
			var errs []error
			for _, n := range names {
				if err := c.stream(cmd, "/collections/"+url.PathEscape(n)+"/"+verb); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", n, err))
				}
			}
			return errors.Join(errs...)
		},
	}
}

// stream runs a sync or reindex and shows its NDJSON progress, then the report.
func (c *ragClient) stream(cmd *cobra.Command, path string) error {
	resp, err := c.do(cmd.Context(), http.MethodPost, "", ragAPI+path, "application/json", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return c.answerError("", resp.Status, b)
	}
	out := cmd.OutOrStdout()
	view := newProgressView(out, isTerminal(out))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var line struct {
			Progress *rag.Progress `json:"progress"`
			Report   *rag.Report   `json:"report"`
			Error    string        `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("the agent sent a bad progress line: %w", err)
		}
		if line.Progress != nil {
			view.update(*line.Progress)
		}
		if line.Report != nil || line.Error != "" {
			view.finish()
			if line.Report != nil {
				renderReport(out, *line.Report)
			}
			if line.Error != "" {
				return errors.New(line.Error)
			}
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("the progress stream broke: %w", err)
	}
	return errors.New("the agent ended the progress stream without a report")
}

func renderReport(w io.Writer, rep rag.Report) {
	fmt.Fprintf(w, "%s: %d files: %d indexed (%d chunks), %d unchanged, %d skipped, %d removed, %d failed in %.1fs\n",
		rep.Collection, rep.Files, rep.Indexed, rep.Chunks, rep.Unchanged, rep.Skipped, rep.Removed, rep.Failed, rep.Seconds)
	for _, it := range rep.Items {
		if it.Outcome == rag.Skipped || it.Outcome == rag.Failed {
			fmt.Fprintf(w, "  %s %s: %s\n", it.Outcome, it.Source, it.Reason)
		}
	}
	if rep.Canceled {
		fmt.Fprintln(w, "  canceled: run the command again to finish")
	}
}
