//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/hearthlab/hearth/rag/ragtest"
)

// ragFolder writes a folder of real files of every type the agent reads, plus one it must skip.
func ragFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"boiler.pdf": ragtest.PDF("Boiler manual", [][]string{
			{"Boiler manual", "The boiler pressure should stay between 1.2 and 1.5 bar."},
			{"Warranty", "The warranty lasts five years from installation."}}, ""),
		"lease.docx": ragtest.DOCX([]ragtest.Para{{Style: "Heading1", Text: "Lease"}, {Text: "The deposit is three months of rent."}}),
		"house.md":   []byte("# House\n\n## Keys\n\nThe spare key is under the blue flower pot.\n"),
		"recycling.html": []byte("<html><head><title>Recycling</title></head><body><article><h1>Recycling</h1>" +
			"<p>Glass bottles go in the green container, without their caps, every second Tuesday of the month.</p></article></body></html>"),
		"bills.csv":      []byte("month,item,amount\n2026-01,electricity,84.20\n2026-02,water,31.00\n"),
		"heating-zh.txt": []byte("锅炉的压力应保持在一点二到一点五巴之间。\n"),
		"locked.pdf":     ragtest.PDF("Statement", [][]string{{"balance"}}, "secret"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// ragYAML is the rag section of an agent that indexes folder as collection docs with the tiny
// model for embeddings and answers.
func ragYAML(folder string) string {
	return fmt.Sprintf("rag:\n  embed_model: tiny\n  chat_model: tiny\n  num_ctx: 2048\n  rescan_interval: 0s\n"+
		"  collections:\n    - { name: docs, paths: [%q] }\n", folder)
}

// startRAGAgent starts an agent in front of the shared Ollama with a rag section and waits
// until its folder is indexed.
func startRAGAgent(t *testing.T, s *stack, name string, extra string, tunnel *agentTunnel) *agentProc {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	spec := agentSpec{Name: name, OllamaURL: s.capture.URL(), Tunnel: tunnel}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte(spec.yaml(port, filepath.Join(dir, "data"))+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := s.startHearth("agent", name, fmt.Sprintf("http://127.0.0.1:%d", port), filepath.Join(dir, "agent.log"), "--config", cfg, "--log-level", "debug")
	if a != nil {
		t.Cleanup(a.stop)
		printLogOnFailure(t, a)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := a.waitReady(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, body := do(t, "GET", a.URL, "/rag/v1/collections/docs/documents", "")
		var docs struct {
			Documents []struct{ Source string } `json:"documents"`
		}
		if json.Unmarshal(body, &docs) == nil && len(docs.Documents) == 6 {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("the folder was not indexed within 2 minutes: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestRAG(t *testing.T) {
	s := use(t)
	s.agentOnly(t)
	a := startRAGAgent(t, s, "rag", ragYAML(ragFolder(t)), nil)

	t.Run("hearth rag ls and query", func(t *testing.T) {
		out := runHearth(t, s, "rag", "ls", "--agent", a.URL)
		if !strings.Contains(out, "rag:docs") || !strings.Contains(out, "tiny") {
			t.Errorf("hearth rag ls:\n%s", out)
		}
		out = runHearth(t, s, "rag", "query", "docs", "boiler pressure", "--mode", "keyword", "--agent", a.URL)
		if !strings.Contains(out, "1. Boiler manual (boiler.pdf), page 1") {
			t.Errorf("hearth rag query:\n%s", out)
		}
		out = runHearth(t, s, "rag", "sync", "docs", "--agent", a.URL)
		if !strings.Contains(out, "docs: 7 files: 0 indexed (0 chunks), 6 unchanged, 1 skipped") || !strings.Contains(out, "skipped locked.pdf: the PDF is password-protected") {
			t.Errorf("hearth rag sync:\n%s", out)
		}
	})

	t.Run("ollama run rag:docs", func(t *testing.T) {
		r := s.ollamaCLI(t, a.URL, "run", "rag:docs", "where is the spare key?")
		if r.code != 0 {
			t.Fatalf("ollama run rag:docs: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		r = s.ollamaCLI(t, a.URL, "list")
		if r.code != 0 || !tableFirstColumn(r.stdout)["rag:docs"] {
			t.Errorf("ollama list has no rag:docs:\n%s\n%s", r.stdout, r.stderr)
		}
	})

	t.Run("go-openai streams", func(t *testing.T) {
		cfg := openai.DefaultConfig("unused")
		cfg.BaseURL = a.URL + "/v1"
		c := openai.NewClientWithConfig(cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		stream, err := c.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{Model: "rag:docs", MaxTokens: 24, Seed: new(int),
			Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "what pressure should the boiler have?"}}})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		chunks, finish := 0, ""
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("after %d chunks: %v", chunks, err)
			}
			chunks++
			if len(resp.Choices) > 0 && resp.Choices[0].FinishReason != "" {
				finish = string(resp.Choices[0].FinishReason)
			}
		}
		if chunks < 2 || finish != "stop" {
			t.Errorf("%d chunks, finish %q", chunks, finish)
		}
		// The same stream read raw: its final chunk carries the sources.
		resp, body := do(t, "POST", a.URL, "/v1/chat/completions",
			`{"model":"rag:docs","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"boiler pressure bar"}],"hearth":{"cite":true}}`)
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"source":"boiler.pdf","title":"Boiler manual","page":1`)) || !bytes.Contains(body, []byte(`Sources:`)) {
			t.Errorf("raw stream: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("openai npm streams with sources", func(t *testing.T) {
		out := runNodeRAG(t, s, a.URL+"/v1", "rag:docs", "how long is the boiler warranty?", "")
		if out.Chunks < 2 || out.FinishReason != "stop" || out.Sources < 1 {
			t.Errorf("openai npm: %+v", out)
		}
	})

	t.Run("PDFium read the PDFs", func(t *testing.T) {
		log, err := os.ReadFile(a.Log)
		if err != nil {
			t.Fatal(err)
		}
		var started map[string]any
		for _, line := range bytes.Split(log, []byte("\n")) {
			if bytes.Contains(line, []byte("PDF engine (PDFium, WebAssembly) started")) {
				_ = json.Unmarshal(line, &started)
			}
		}
		if started == nil || started["err"] != nil {
			t.Errorf("the agent did not start PDFium for the PDFs (log line: %v)", started)
		} else {
			t.Logf("PDFium started in %.1fs", started["seconds"])
		}
	})

	t.Run("unknown collection", func(t *testing.T) {
		resp, body := do(t, "POST", a.URL, "/api/chat", `{"model":"rag:nope","messages":[{"role":"user","content":"x"}]}`)
		if resp.StatusCode != 404 || !bytes.Contains(body, []byte(`no node holds that collection`)) {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
}

type nodeRAGResult struct {
	Chunks       int    `json:"chunks"`
	Text         string `json:"text"`
	FinishReason string `json:"finish_reason"`
	Sources      int    `json:"sources"`
}

func runNodeRAG(t *testing.T, s *stack, base, model, question, key string) nodeRAGResult {
	t.Helper()
	dir := filepath.Join(s.root, "e2e", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		t.Fatalf("the openai npm package is not installed in %s: run e2e/setup.sh (%v)", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"rag.mjs", base, model, question}
	if key != "" {
		args = append(args, key)
	}
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node rag.mjs: %v\nstdout: %s\nstderr: %s", err, stdout.Bytes(), stderr.Bytes())
	}
	var out nodeRAGResult
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		_ = json.Unmarshal(sc.Bytes(), &out)
	}
	return out
}

// TestRAGThroughTheRelay: a phone's token limited to rag:* gets a grounded answer from home
// through relay → tunnel → agent, and nothing else.
func TestRAGThroughTheRelay(t *testing.T) {
	s := use(t)
	s.agentOnly(t)
	rl := startRelay(t, s)
	startRAGAgent(t, s, "home", ragYAML(ragFolder(t)), &agentTunnel{
		Relay: rl.tunnel, Token: relayTunnelToken, Name: "home", CA: rl.issuerFile, ServerName: relayDomain})
	rl.waitFor(t, "the home channel online", 30*time.Second, func() string {
		code, body, err := rl.get("/admin/v1/agents", "Bearer "+relayAdminKey)
		if err != nil {
			return err.Error()
		}
		if code != 200 || !strings.Contains(body, `"online":true`) {
			return fmt.Sprintf("/admin/v1/agents: %d %s", code, body)
		}
		return ""
	})
	out := runHearth(t, s, "token", "create", "--name", "phone", "--models", "rag:*", "--db", rl.db)
	m := regexp.MustCompile(`\n\n    (\S+)\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no token in the output of hearth token create:\n%s", out)
	}
	auth := "Bearer " + m[1]
	rl.waitFor(t, "the relay to know the token and list rag:docs", 30*time.Second, func() string {
		code, body, err := rl.get("/v1/models", auth)
		if err != nil {
			return err.Error()
		}
		if code != 200 || !strings.Contains(body, `"rag:docs"`) {
			return fmt.Sprintf("/v1/models: %d %s", code, body)
		}
		return ""
	})
	code, body := rl.post(t, "/v1/chat/completions", auth,
		`{"model":"rag:docs","max_tokens":16,"messages":[{"role":"user","content":"where is the spare key?"}],"hearth":{"cite":true}}`)
	if code != 200 || !strings.Contains(body, `"sources":[`) || !strings.Contains(body, `"source":"house.md"`) {
		t.Errorf("rag:docs through the relay: %d %s", code, body)
	}
	code, body = rl.post(t, "/v1/chat/completions", auth, `{"model":"tiny","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
	if code != 403 {
		t.Errorf("a rag:* token asking for tiny: %d %s, want 403", code, body)
	}
}

// post calls the relay directly as https://relay.test.
func (rl *relayProc) post(t *testing.T, path, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://"+relayDomain+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	c := *rl.client
	c.Timeout = 2 * time.Minute
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
