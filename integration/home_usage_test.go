package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/tokens"
)

// refusal is an error answer in either dialect: {"error":"..."} or {"error":{...}}.
type refusal struct {
	status        int
	message, code string
	errType       string
}

func readRefusal(t *testing.T, resp *http.Response, body string) refusal {
	t.Helper()
	r := refusal{status: resp.StatusCode}
	var ollama struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(body), &ollama) == nil && ollama.Error != "" {
		r.message = ollama.Error
		return r
	}
	var openai struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &openai); err != nil || openai.Error.Message == "" {
		t.Fatalf("%s: not an error answer (%d): %s", resp.Request.URL.Path, resp.StatusCode, body)
	}
	r.message, r.code, r.errType = openai.Error.Message, openai.Error.Code, openai.Error.Type
	return r
}

// TestHomeUsageQuota: the routes that embed or generate only at home count toward a token's
// monthly quota like a chat, with the counts home reports, and are refused with the chat
// routes' own 429 once it is used up; read-only routes stay open.
func TestHomeUsageQuota(t *testing.T) {
	w := startWorld(t, "http-01")
	const quota = 40
	secret, _, err := w.relay.Store().Create(t.Context(), tokens.Spec{Name: "meter", MonthlyTokens: quota})
	if err != nil {
		t.Fatal(err)
	}
	auth := "Bearer " + secret

	const embed = `{"model":"tiny","input":"the quick brown fox jumps"}`
	used, served := 0, 0
	var resp *http.Response
	var body string
	for range 20 {
		resp, body = w.do(t, http.MethodPost, "/api/embed", embed, auth)
		if resp.StatusCode != http.StatusOK {
			break
		}
		var out struct {
			Embeddings      [][]float64 `json:"embeddings"`
			PromptEvalCount int         `json:"prompt_eval_count"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Embeddings) != 1 || out.PromptEvalCount == 0 {
			t.Fatalf("/api/embed: %s", body)
		}
		used += out.PromptEvalCount
		served++
	}
	if served == 0 || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("/api/embed after %d answers (%d tokens) of a %d-token quota: %d %s, want 429", served, used, quota, resp.StatusCode, body)
	}

	// The message chat gives (Reserve's), with what home reported as used: the reservation
	// was settled with the real counts, not the estimates.
	resets := time.Now().UTC().AddDate(0, 0, -time.Now().UTC().Day()+1).AddDate(0, 1, 0).Format("2006-01-02")
	want := func(reqBody string) string {
		need := ""
		if used < quota {
			need = fmt.Sprintf(" and this request needs about %d", count.Estimate(reqBody))
		}
		return fmt.Sprintf("token \"meter\" has used %d of its %d tokens this month%s (resets %s UTC); raise it with `hearth token set meter --quota-tokens N`",
			used, quota, need, resets)
	}
	if got := readRefusal(t, resp, body); got != (refusal{status: http.StatusTooManyRequests, message: want(embed)}) {
		t.Errorf("/api/embed over the quota: %+v\nwant 429 %q", got, want(embed))
	}

	const (
		chat        = `{"model":"tiny","stream":false,"messages":[{"role":"user","content":"the quick brown fox jumps"}]}`
		openaiEmbed = `{"model":"tiny","input":"the quick brown fox jumps"}`
		completion  = `{"model":"tiny","prompt":"the quick brown fox jumps"}`
		legacyEmbed = `{"model":"tiny","prompt":"the quick brown fox jumps"}`
	)
	refusalOf := func(path, reqBody string) refusal {
		t.Helper()
		resp, body := w.do(t, http.MethodPost, path, reqBody, auth)
		return readRefusal(t, resp, body)
	}
	chatOllama := refusalOf("/api/chat", chat)
	chatOpenAI := refusalOf("/v1/chat/completions", chat)
	if chatOllama.status != http.StatusTooManyRequests || chatOllama.message != want(chat) || chatOpenAI.code != "insufficient_quota" {
		t.Fatalf("chat over the quota: %+v / %+v, want 429 %q", chatOllama, chatOpenAI, want(chat))
	}
	for _, tt := range []struct {
		path, body string
		like       refusal // chat's refusal in the same dialect
	}{
		{"/v1/embeddings", openaiEmbed, chatOpenAI},
		{"/v1/completions", completion, chatOpenAI},
		{"/api/embeddings", legacyEmbed, chatOllama},
	} {
		got := refusalOf(tt.path, tt.body)
		wantRefusal := tt.like
		wantRefusal.message = want(tt.body)
		if got != wantRefusal {
			t.Errorf("%s over the quota: %+v\nwant %+v", tt.path, got, wantRefusal)
		}
	}

	// Reading stays open to a token whose quota is used up.
	for _, tt := range []struct{ method, path, body, want string }{
		{http.MethodPost, "/api/show", `{"model":"tiny"}`, `"details"`},
		{http.MethodGet, "/api/tags", "", `"name":"tiny:latest"`},
	} {
		if resp, body := w.do(t, tt.method, tt.path, tt.body, auth); resp.StatusCode != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s over the quota: %d %s, want 200", tt.method, tt.path, resp.StatusCode, body)
		}
	}

	// Tokens per minute: one request always fits; what home reported it used keeps the next
	// one out for the minute.
	fast, _, err := w.relay.Store().Create(t.Context(), tokens.Spec{Name: "fast", TPM: 5})
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := w.do(t, http.MethodPost, "/v1/embeddings", openaiEmbed, "Bearer "+fast); resp.StatusCode != http.StatusOK {
		t.Fatalf("/v1/embeddings, the first of the minute: %d %s", resp.StatusCode, body)
	}
	resp, body = w.do(t, http.MethodPost, "/v1/embeddings", openaiEmbed, "Bearer "+fast)
	got := readRefusal(t, resp, body)
	const tpmMsg = `token "fast" is over its limit of 5 tokens per minute (the token's tpm): retry in `
	if got.status != http.StatusTooManyRequests || got.code != "rate_limit_exceeded" || !strings.HasPrefix(got.message, tpmMsg) || resp.Header.Get("Retry-After") == "" {
		t.Errorf("/v1/embeddings over the token's tpm: %+v, Retry-After %q\nwant 429 rate_limit_exceeded %q...", got, resp.Header.Get("Retry-After"), tpmMsg)
	}
}

// usageRow is a row of GET /admin/v1/usage.
type usageRow struct {
	Key              string  `json:"key"`
	Requests         int64   `json:"requests"`
	Errors           int64   `json:"errors"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	EstimatedShare   float64 `json:"estimated_share"`
	AvgTTFTMs        float64 `json:"avg_ttft_ms"`
	AvgDurationMs    float64 `json:"avg_duration_ms"`
}

func (w *world) usage(t *testing.T, by string) map[string]usageRow {
	t.Helper()
	resp, body := w.do(t, http.MethodGet, "/admin/v1/usage?since=all&by="+by, "", "Bearer "+adminKey)
	var out struct {
		Rows []usageRow `json:"rows"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
		t.Fatalf("usage by %s: %d %s", by, resp.StatusCode, body)
	}
	rows := map[string]usageRow{}
	for _, r := range out.Rows {
		rows[r.Key] = r
	}
	return rows
}

// TestHomeUsageRecorded: each completion and embedding that goes home is written to the
// usage log on channel home, with the token counts home's answer reports (Ollama's
// prompt_eval_count, OpenAI's usage), estimated when it reports none; read-only routes are
// not.
func TestHomeUsageRecorded(t *testing.T) {
	w := startWorld(t, "http-01")
	ctx := t.Context()
	post := func(t *testing.T, token, path, body string) (*http.Response, string) {
		t.Helper()
		secret, _, err := w.relay.Store().Create(ctx, tokens.Spec{Name: token})
		if err != nil {
			t.Fatal(err)
		}
		return w.do(t, http.MethodPost, path, body, "Bearer "+secret)
	}
	want := map[string]usageRow{}
	ok := func(t *testing.T, resp *http.Response, body string) {
		t.Helper()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", resp.Request.URL.Path, resp.StatusCode, body)
		}
	}

	// /v1/completions: OpenAI's usage.
	resp, body := post(t, "completions", "/v1/completions", `{"model":"tiny","prompt":"once upon a time"}`)
	ok(t, resp, body)
	var completion struct {
		Usage struct {
			Prompt     int64 `json:"prompt_tokens"`
			Completion int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal([]byte(body), &completion) != nil || completion.Usage.Completion == 0 {
		t.Fatalf("/v1/completions: %s", body)
	}
	want["completions"] = usageRow{Requests: 1, PromptTokens: completion.Usage.Prompt, CompletionTokens: completion.Usage.Completion}

	// A stream that asks for the usage chunk: its counts; one that does not: estimated from
	// the request and the streamed text.
	streamText := func(body string) (text string, usage map[string]int64) {
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			data, found := strings.CutPrefix(sc.Text(), "data: ")
			if !found || data == "[DONE]" {
				continue
			}
			var chunk struct {
				Choices []struct {
					Text string `json:"text"`
				} `json:"choices"`
				Usage map[string]int64 `json:"usage"`
			}
			if err := json.Unmarshal([]byte(data), &chunk); err != nil {
				t.Fatalf("stream chunk %q: %v", data, err)
			}
			for _, c := range chunk.Choices {
				text += c.Text
			}
			if chunk.Usage["completion_tokens"] > 0 {
				usage = chunk.Usage
			}
		}
		return text, usage
	}
	resp, body = post(t, "stream-usage", "/v1/completions", `{"model":"tiny","prompt":"once upon a time","stream":true,"stream_options":{"include_usage":true}}`)
	ok(t, resp, body)
	if _, u := streamText(body); u == nil {
		t.Fatalf("stream with include_usage has no usage: %s", body)
	} else {
		want["stream-usage"] = usageRow{Requests: 1, PromptTokens: u["prompt_tokens"], CompletionTokens: u["completion_tokens"]}
	}
	const stream = `{"model":"tiny","prompt":"once upon a time","stream":true}`
	resp, body = post(t, "stream", "/v1/completions", stream)
	ok(t, resp, body)
	text, _ := streamText(body)
	if text == "" {
		t.Fatalf("stream without text: %s", body)
	}
	want["stream"] = usageRow{Requests: 1, PromptTokens: int64(count.Estimate(stream)), CompletionTokens: int64(count.Estimate(text)), EstimatedShare: 1}

	// Embeddings: Ollama's prompt_eval_count, OpenAI's usage, none from the older route.
	resp, body = post(t, "embed", "/api/embed", `{"model":"tiny","input":["a first text","a second one"]}`)
	ok(t, resp, body)
	var embed struct {
		PromptEvalCount int64 `json:"prompt_eval_count"`
	}
	if json.Unmarshal([]byte(body), &embed) != nil || embed.PromptEvalCount == 0 {
		t.Fatalf("/api/embed: %s", body)
	}
	want["embed"] = usageRow{Requests: 1, PromptTokens: embed.PromptEvalCount}
	resp, body = post(t, "openai-embed", "/v1/embeddings", `{"model":"tiny","input":"a first text"}`)
	ok(t, resp, body)
	if json.Unmarshal([]byte(body), &completion) != nil || completion.Usage.Prompt == 0 {
		t.Fatalf("/v1/embeddings: %s", body)
	}
	want["openai-embed"] = usageRow{Requests: 1, PromptTokens: completion.Usage.Prompt}
	const legacy = `{"model":"tiny","prompt":"a first text"}`
	resp, body = post(t, "legacy-embed", "/api/embeddings", legacy)
	ok(t, resp, body)
	want["legacy-embed"] = usageRow{Requests: 1, PromptTokens: int64(count.Estimate(legacy)), EstimatedShare: 1}

	// Home's refusal is recorded with its status and no tokens.
	if resp, body = post(t, "missing", "/api/embed", `{"model":"nope","input":"x"}`); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/api/embed of a missing model: %d %s", resp.StatusCode, body)
	}
	want["missing"] = usageRow{Requests: 1, Errors: 1}

	// Read-only: no record.
	resp, body = post(t, "show", "/api/show", `{"model":"tiny"}`)
	ok(t, resp, body)

	var got map[string]usageRow
	hearthtest.Eventually(t, "the usage records written", 10*time.Second, func() bool {
		got = w.usage(t, "token")
		return len(got) >= len(want)
	})
	if _, found := got["show"]; found || len(got) != len(want) {
		t.Errorf("usage by token: %+v, want only %v", got, want)
	}
	for token, wr := range want {
		g := got[token]
		if g.Requests != wr.Requests || g.Errors != wr.Errors || g.PromptTokens != wr.PromptTokens ||
			g.CompletionTokens != wr.CompletionTokens || g.EstimatedShare != wr.EstimatedShare {
			t.Errorf("usage of %s: %+v\nwant %+v", token, g, wr)
		}
		if g.AvgDurationMs <= 0 || wr.Errors == 0 && g.AvgTTFTMs <= 0 {
			t.Errorf("usage of %s: ttft %v ms, duration %v ms", token, g.AvgTTFTMs, g.AvgDurationMs)
		}
	}
	if byChannel := w.usage(t, "channel"); len(byChannel) != 1 || byChannel["home"].Requests != int64(len(want)) {
		t.Errorf("usage by channel: %+v, want %d requests on home", byChannel, len(want))
	}
	if byModel := w.usage(t, "model"); len(byModel) != 2 || byModel["tiny"].Requests != int64(len(want)-1) || byModel["nope"].Requests != 1 {
		t.Errorf("usage by model: %+v", byModel)
	}
}

// TestHomeUsageStreamIsNotHeld: metering a completion's stream on its way to the client
// does not buffer it: the first chunk arrives while home holds back the rest.
func TestHomeUsageStreamIsNotHeld(t *testing.T) {
	w := startWorld(t, "http-01")
	release := w.gate.hold()
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	t.Cleanup(let)
	req, _ := http.NewRequest(http.MethodPost, "https://"+relayDomain+"/v1/completions",
		strings.NewReader(`{"model":"tiny","prompt":"once upon a time","stream":true}`))
	req.Header.Set("Authorization", "Bearer "+w.token)
	type start struct {
		resp  *http.Response
		br    *bufio.Reader
		first string
		err   error
	}
	started := make(chan start, 1)
	go func() {
		resp, err := w.client.Do(req)
		if err != nil {
			started <- start{err: err}
			return
		}
		br := bufio.NewReader(resp.Body)
		first, err := br.ReadString('\n')
		started <- start{resp, br, first, err}
	}()
	var s start
	select {
	case s = <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the first chunk did not reach the client while home held the rest: the meter buffers")
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	defer s.resp.Body.Close()
	if s.resp.StatusCode != http.StatusOK || !strings.HasPrefix(s.first, "data: ") {
		t.Fatalf("/v1/completions stream: %d, first line %q", s.resp.StatusCode, s.first)
	}
	let()
	rest, _ := io.ReadAll(s.br)
	if !strings.Contains(string(rest), "data: [DONE]") {
		t.Errorf("rest of the stream: %s", rest)
	}
}
