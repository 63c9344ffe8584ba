package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/ollamasim"
	"github.com/hearthlab/hearth/rag/ragtest"
)

func startRAGAgent(t *testing.T, embedModel string) string {
	t.Helper()
	sim := ollamasim.New(ollamasim.Config{Parallel: 4, Models: []ollamasim.Model{{Name: "tiny"}, {Name: "embed", EmbedDim: 32}}})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	base, _ := startAgent(t, sim.URL(), func(c *config.Agent) {
		c.Rag.EmbedModel = embedModel
		c.Rag.ChatModel = "tiny"
		c.Rag.PDFEngine = "go" // PDFium's first start compiles for minutes under -race; e2e runs it
	})
	return base
}

func upload(t *testing.T, url, name string, data []byte) (*http.Response, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	mw.Close()
	return do(t, http.MethodPost, url, body.String(), "Content-Type", mw.FormDataContentType())
}

func TestRAGOverTheAgentAPI(t *testing.T) {
	base := startRAGAgent(t, "embed")
	resp, body := do(t, http.MethodPost, base+"/rag/v1/collections", `{"name":"docs"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	docx := ragtest.DOCX([]ragtest.Para{{Style: "Heading1", Text: "Lease"}, {Text: "The deposit is three months of rent."}})
	for _, tc := range []struct {
		name   string
		data   []byte
		status int
		want   string
	}{
		{"lease.docx", docx, 200, `"outcome":"indexed"`},
		{"notes.md", []byte("# Boiler\n\nThe boiler pressure should stay between 1.2 and 1.5 bar."), 200, `"outcome":"indexed"`},
		{"../../etc/passwd", []byte("x"), 400, `a plain name without folders`},
		{"empty.txt", nil, 422, `empty.txt was not indexed: the file is empty`},
		{"locked.pdf", ragtest.PDF("x", [][]string{{"secret"}}, "pw"), 422, `password-protected`},
		{"broken.pdf", []byte("%PDF-1.4\nnot really"), 422, `the PDF is damaged`},
		{"bomb.docx", ragtest.ZipBombDOCX(2 << 20), 422, `zip bomb`},
	} {
		resp, body := upload(t, base+"/rag/v1/collections/docs/documents", tc.name, tc.data)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("upload %s: %d %s, want %d with %q", tc.name, resp.StatusCode, body, tc.status, tc.want)
		}
	}
	resp, body = do(t, http.MethodPost, base+"/rag/v1/collections/docs/query", `{"query":"boiler pressure","mode":"keyword"}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"source":"upload/notes.md"`) {
		t.Fatalf("query: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, base+"/rag/v1/collections/docs/chat", `{"query":"what is the boiler pressure?"}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "event: sources\n") || !strings.Contains(body, "event: token\n") || !strings.Contains(body, "event: done\n") {
		t.Fatalf("chat SSE: %d %s", resp.StatusCode, body)
	}

	for _, path := range []string{"/v1/models", "/api/tags"} {
		if _, body := do(t, http.MethodGet, base+path, ""); !strings.Contains(body, `"rag:docs"`) {
			t.Errorf("%s does not list rag:docs: %s", path, body)
		}
	}
	// OpenAI, not streamed: the answer and an extra sources field; cite appends a block.
	resp, body = do(t, http.MethodPost, base+"/v1/chat/completions",
		`{"model":"rag:docs","messages":[{"role":"user","content":"boiler pressure?"}],"hearth":{"cite":true}}`)
	var oa struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Sources []struct {
			N      int    `json:"n"`
			Source string `json:"source"`
		} `json:"sources"`
	}
	if err := json.Unmarshal([]byte(body), &oa); err != nil || resp.StatusCode != 200 || len(oa.Choices) != 1 {
		t.Fatalf("openai chat: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(oa.Choices[0].Message.Content, "tok0") || !strings.Contains(oa.Choices[0].Message.Content, "\n\nSources:") {
		t.Errorf("answer without the model's text or the Sources block: %q", oa.Choices[0].Message.Content)
	}
	if len(oa.Sources) == 0 || oa.Sources[0].Source != "upload/notes.md" {
		t.Errorf("sources = %+v", oa.Sources)
	}
	// OpenAI streamed: chunks, the final one with sources, then [DONE].
	resp, body = do(t, http.MethodPost, base+"/v1/chat/completions",
		`{"model":"rag:docs","stream":true,"messages":[{"role":"user","content":"deposit rent"}]}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"finish_reason":"stop"`) || !strings.Contains(body, `"sources":[{"n":1`) || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Errorf("openai stream: %d %s", resp.StatusCode, body)
	}
	// Ollama chat streams by default; generate is what `ollama run` sends; show answers.
	resp, body = do(t, http.MethodPost, base+"/api/chat", `{"model":"rag:docs","messages":[{"role":"user","content":"deposit"}]}`)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if resp.StatusCode != 200 || len(lines) < 2 || !strings.Contains(lines[len(lines)-1], `"done":true`) || !strings.Contains(lines[len(lines)-1], `"sources"`) {
		t.Errorf("ollama chat: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, base+"/api/generate", `{"model":"rag:docs","prompt":"deposit","stream":false}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"response":"tok0`) || !strings.Contains(body, `"sources"`) {
		t.Errorf("ollama generate: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, base+"/api/generate", `{"model":"rag:docs"}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"done_reason":"load"`) {
		t.Errorf("load request: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, base+"/api/show", `{"name":"rag:docs"}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"capabilities":["completion"]`) {
		t.Errorf("show: %d %s", resp.StatusCode, body)
	}
	// Unknown collection: 404 in each dialect.
	resp, body = do(t, http.MethodPost, base+"/v1/chat/completions", `{"model":"rag:nope","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 404 || !strings.Contains(body, `"code":"model_not_found"`) || !strings.Contains(body, `no node holds that collection`) {
		t.Errorf("openai unknown collection: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, base+"/api/chat", `{"model":"rag:nope","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 404 || !strings.HasPrefix(body, `{"error":"model \"rag:nope\" not found`) {
		t.Errorf("ollama unknown collection: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodGet, base+"/rag/v1/collections/nope/documents", "")
	if resp.StatusCode != 404 || !strings.Contains(body, `no such collection: \"nope\"`) {
		t.Errorf("rag api unknown collection: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodDelete, base+"/rag/v1/collections/docs/documents/upload%2Fnotes.md", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"deleted":"upload/notes.md"`) {
		t.Errorf("delete document: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodDelete, base+"/rag/v1/collections/docs", "")
	if resp.StatusCode != 200 {
		t.Errorf("delete collection: %d %s", resp.StatusCode, body)
	}
}

func TestRAGEmbedModelMissing(t *testing.T) {
	base := startRAGAgent(t, "nomic-embed-text")
	if resp, body := do(t, http.MethodPost, base+"/rag/v1/collections", `{"name":"docs"}`); resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	resp, body := upload(t, base+"/rag/v1/collections/docs/documents", "a.md", []byte("# A\n\nsome text"))
	if resp.StatusCode != 503 || !strings.Contains(body, "run `ollama pull nomic-embed-text` on a node of the cluster") {
		t.Errorf("upload without the embed model: %d %s", resp.StatusCode, body)
	}
}

// zeros is a reader of n bytes of 'a' that allocates nothing: a 2 GB upload.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	for i := range p[:k] {
		p[i] = 'a'
	}
	z.n -= k
	return int(k), nil
}

func TestRAGRefusesHugeUploadWithoutReadingIt(t *testing.T) {
	sim := startSim(t, "tiny")
	base, _ := startAgent(t, sim.URL(), func(c *config.Agent) { c.Rag.MaxFileSize = 1 << 20 })
	if resp, body := do(t, http.MethodPost, base+"/rag/v1/collections", `{"name":"docs"}`); resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, err := mw.CreateFormFile("file", "huge.txt")
		if err == nil {
			_, err = io.Copy(fw, &zeros{n: 2 << 30})
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, _ := http.NewRequest(http.MethodPost, base+"/rag/v1/collections/docs/documents", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the server should answer before the upload ends: %v", err)
	}
	defer resp.Body.Close()
	pr.CloseWithError(io.ErrClosedPipe)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "huge.txt is over rag.max_file_size (1048576 bytes)") {
		t.Errorf("2 GB upload: %d %s", resp.StatusCode, body)
	}
}

// TestRAGAcrossTheCluster: a chat to rag:docs sent to an agent that does not hold the
// collection is answered by the one that does.
func TestRAGAcrossTheCluster(t *testing.T) {
	ms := startCluster(t,
		memberSpec{name: "nas", models: []string{"qwen3:8b", "nomic-embed-text"}}, // the rag defaults
		memberSpec{name: "laptop"})
	nas, laptop := ms[0], ms[1]
	if resp, body := do(t, http.MethodPost, nas.base+"/rag/v1/collections", `{"name":"docs"}`); resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	if resp, body := upload(t, nas.base+"/rag/v1/collections/docs/documents", "house.md", []byte("# House\n\nThe spare key is under the blue pot.")); resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	hearthtest.Eventually(t, "laptop lists rag:docs", waitLimit, func() bool {
		_, body := do(t, http.MethodGet, laptop.base+"/v1/models", "")
		return strings.Contains(body, `"rag:docs"`)
	})
	resp, body := do(t, http.MethodPost, laptop.base+"/v1/chat/completions",
		`{"model":"rag:docs","stream":true,"messages":[{"role":"user","content":"spare key"}]}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"source":"upload/house.md"`) || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Errorf("chat through the laptop: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, laptop.base+"/api/chat", `{"model":"rag:other","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 404 {
		t.Errorf("unknown collection through the laptop: %d %s", resp.StatusCode, body)
	}
}
