package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/rag"
)

func ragAdd(c *ragClient) *cobra.Command {
	return &cobra.Command{
		Use: "add NAME FILE...", Short: "Upload files into a collection and index them", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			rep := rag.Report{Collection: args[0], Files: len(args) - 1}
			var failed []error
			for i, file := range args[1:] {
				res, err := c.upload(cmd, args[0], file)
				if err != nil {
					failed = append(failed, fmt.Errorf("%s: %w", file, err))
					res = rag.PutResult{Source: file, Outcome: rag.Failed, Reason: err.Error()}
				}
				switch res.Outcome {
				case rag.Indexed:
					rep.Indexed++
					rep.Chunks += res.Chunks
				case rag.Unchanged:
					rep.Unchanged++
				case rag.Skipped:
					rep.Skipped++
				case rag.Failed:
					rep.Failed++
				}
				rep.Items = append(rep.Items, res)
				line := fmt.Sprintf("[%d/%d] %s %s", i+1, len(args)-1, res.Outcome, file)
				if res.Outcome == rag.Indexed {
					line += fmt.Sprintf(" (%d chunks)", res.Chunks)
				}
				if res.Reason != "" {
					line += ": " + res.Reason
				}
				fmt.Fprintln(out, line)
			}
			renderReport(out, rep)
			return errors.Join(failed...)
		},
	}
}

// upload streams one file as multipart; a skipped file (422) is a result, not an error.
func (c *ragClient) upload(cmd *cobra.Command, collection, file string) (rag.PutResult, error) {
	// Opening a pipe blocks until something writes to it, past Ctrl-C; a folder would fail
	// mid-upload as if the agent were unreachable.
	st, err := os.Stat(file)
	switch {
	case err != nil:
		return rag.PutResult{}, err
	case st.IsDir():
		return rag.PutResult{}, errors.New("is a folder: `hearth rag create NAME --path DIR` indexes a folder and keeps it in sync, or give its files")
	case !st.Mode().IsRegular():
		return rag.PutResult{}, errors.New("is not a file but a pipe, socket or device")
	}
	f, err := os.Open(file)
	if err != nil {
		return rag.PutResult{}, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile("file", filepath.Base(file))
		if err == nil {
			_, err = io.Copy(part, f)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	resp, err := c.do(cmd.Context(), http.MethodPost, "", ragAPI+"/collections/"+url.PathEscape(collection)+"/documents", mw.FormDataContentType(), pr)
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return rag.PutResult{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var out struct {
		Results []rag.PutResult `json:"results"`
	}
	if (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnprocessableEntity) && json.Unmarshal(b, &out) == nil && len(out.Results) == 1 {
		return out.Results[0], nil
	}
	return rag.PutResult{}, c.answerError("", resp.Status, b)
}

func ragQuery(c *ragClient) *cobra.Command {
	var q rag.Query
	var asJSON bool
	cmd := &cobra.Command{
		Use: `query NAME "question"`, Short: "Search a collection (no model answers: the chunks found, with scores)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q.Text = args[1]
			var ans rag.Answer
			if err := c.callJSON(cmd.Context(), http.MethodPost, "", ragAPI+"/collections/"+url.PathEscape(args[0])+"/query", q, &ans); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(ans)
			}
			renderResults(out, ans)
			return nil
		},
	}
	cmd.Flags().StringVar(&q.Mode, "mode", "hybrid", "hybrid, keyword or vector")
	cmd.Flags().IntVar(&q.TopK, "top-k", 5, "how many results")
	cmd.Flags().StringVar(&q.Source, "source", "", `only sources matching this glob ("*.pdf", "taxes/**")`)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the answer as JSON")
	return cmd
}

func renderResults(w io.Writer, ans rag.Answer) {
	if ans.Warning != "" {
		fmt.Fprintf(w, "note: %s\n", ans.Warning)
	}
	if len(ans.Results) == 0 {
		fmt.Fprintln(w, "nothing found")
		return
	}
	for i, r := range ans.Results {
		src := rag.Source{Source: r.Source, Title: r.Title, Page: r.Page, Heading: r.Heading}
		fmt.Fprintf(w, "%d. %s  (%s score %.4f)\n", i+1, src.Label(), ans.Mode, r.Score)
		text := strings.Join(strings.Fields(r.Text), " ")
		if rs := []rune(text); len(rs) > 200 {
			text = string(rs[:200]) + "…"
		}
		fmt.Fprintf(w, "   %s\n", text)
	}
}

func ragChat(c *ragClient) *cobra.Command {
	var mode string
	cmd := &cobra.Command{
		Use: `chat NAME ["question"]`, Short: "Ask a collection questions; answers cite their sources", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			var history []rag.Message
			ask := func(q string) error {
				answer, err := c.chat(cmd, args[0], mode, history, q)
				if err != nil {
					return err
				}
				history = append(history, rag.Message{Role: "user", Content: q}, rag.Message{Role: "assistant", Content: answer})
				return nil
			}
			if len(args) == 2 {
				return ask(args[1])
			}
			tty := isTerminal(out)
			in := bufio.NewScanner(cmd.InOrStdin())
			for {
				if tty {
					fmt.Fprint(out, ">>> ")
				}
				if !in.Scan() {
					return in.Err()
				}
				q := strings.TrimSpace(in.Text())
				if q == "" {
					continue
				}
				if q == "/bye" || q == "/exit" {
					return nil
				}
				if err := ask(q); err != nil {
					fmt.Fprintf(out, "error: %v\n", err)
				}
			}
		},
	}
	cmd.Flags().StringVar(&mode, "mode", "hybrid", "hybrid, keyword or vector retrieval")
	return cmd
}

// chat streams one answer: its tokens as they come, then the sources it cited.
func (c *ragClient) chat(cmd *cobra.Command, collection, mode string, history []rag.Message, q string) (string, error) {
	body, _ := json.Marshal(map[string]any{"messages": history, "query": q, "mode": mode})
	resp, err := c.do(cmd.Context(), http.MethodPost, "", ragAPI+"/collections/"+url.PathEscape(collection)+"/chat", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return "", c.answerError("", resp.Status, b)
	}
	out := cmd.OutOrStdout()
	var answer strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		switch event {
		case "token":
			var t struct{ Text string }
			if json.Unmarshal([]byte(data), &t) == nil {
				answer.WriteString(t.Text)
				fmt.Fprint(out, t.Text)
			}
		case "error":
			var e struct{ Error string }
			_ = json.Unmarshal([]byte(data), &e)
			fmt.Fprintln(out)
			return answer.String(), errors.New(e.Error)
		case "done":
			var fin rag.Final
			if err := json.Unmarshal([]byte(data), &fin); err != nil {
				return answer.String(), fmt.Errorf("the agent sent a bad final event: %w", err)
			}
			fmt.Fprintln(out, fin.SourcesBlock())
			return answer.String(), nil
		}
	}
	if err := sc.Err(); err != nil {
		return answer.String(), err
	}
	return answer.String(), errors.New("the answer stream ended early")
}
