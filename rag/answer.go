package rag

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Chatter streams a chat model's answer; the agent's Client calls /api/chat through the
// router.
type Chatter interface {
	Chat(ctx context.Context, model string, msgs []Message, options map[string]any, onToken func(string) error) (ChatStats, error)
	// ContextLength is the model's own window in tokens (0: unknown).
	ContextLength(ctx context.Context, model string) (int, error)
}

// Source is a numbered source given to the chat model.
type Source struct {
	N       int      `json:"n"`
	Source  string   `json:"source"`
	Title   string   `json:"title,omitempty"`
	Page    int      `json:"page,omitempty"`
	Heading []string `json:"heading,omitempty"`
	Score   float64  `json:"score"`
	// Excerpt is the start of the chunk's text.
	Excerpt string `json:"excerpt"`
	// Cited: the answer refers to it as [N].
	Cited bool `json:"cited"`
}

// Label is how the source reads in a "Sources:" block.
func (s Source) Label() string {
	l := s.Source
	if s.Title != "" && !strings.Contains(s.Source, s.Title) {
		l = s.Title + " (" + s.Source + ")"
	}
	if s.Page > 0 {
		l += fmt.Sprintf(", page %d", s.Page)
	}
	if len(s.Heading) > 0 {
		l += ", " + strings.Join(s.Heading, " > ")
	}
	return l
}

// Answerer answers chats over a store's collections.
type Answerer struct {
	Store *Store
	Chat  Chatter
	// Model writes answers (rag.chat_model); NumCtx is the window asked of it (rag.num_ctx);
	// TopK chunks are retrieved (rag.top_k).
	Model  string
	NumCtx int
	TopK   int
}

// AnswerRequest is one chat to rag:<collection>.
type AnswerRequest struct {
	Collection string
	Messages   []Message
	// Options are the caller's model options (temperature, num_ctx, ...), passed on.
	Options map[string]any
	Mode    string
	TopK    int
}

// Final is the end of an answer.
type Final struct {
	Answer  string   `json:"answer"`
	Sources []Source `json:"sources"`
	// LeftOut counts retrieved chunks that did not fit in the window.
	LeftOut int `json:"left_out"`
	// Window is the context window used, in tokens.
	Window  int       `json:"num_ctx"`
	Model   string    `json:"model"`
	Stats   ChatStats `json:"stats"`
	Warning string    `json:"warning,omitempty"`
}

// Cited returns the sources the answer cites.
func (f Final) Cited() []Source {
	var out []Source
	for _, s := range f.Sources {
		if s.Cited {
			out = append(out, s)
		}
	}
	return out
}

// SourcesBlock is the text appended to an answer when the caller asks for citations.
func (f Final) SourcesBlock() string {
	var b strings.Builder
	cited := f.Cited()
	b.WriteString("\n\nSources:")
	if len(cited) == 0 {
		b.WriteString(" none cited")
	}
	for _, s := range cited {
		fmt.Fprintf(&b, "\n[%d] %s", s.N, s.Label())
	}
	return b.String()
}

// LeftOutNote says that sources were left out, "" when none were.
func (f Final) LeftOutNote() string {
	if f.LeftOut == 0 {
		return ""
	}
	return fmt.Sprintf("\n\n(%d more matching passages did not fit in the context window of %d tokens and were left out.)", f.LeftOut, f.Window)
}

// ErrNoQuestion: the conversation has no user message to answer.
var ErrNoQuestion = errors.New("no question")

// Answer retrieves for the conversation's last user message (with the one before it when it
// is short), builds the grounded prompt sized to the chat model's window and streams the
// answer: sources first, then tokens. The Final carries which sources were cited.
func (a *Answerer) Answer(ctx context.Context, req AnswerRequest, onSources func([]Source) error, onToken func(string) error) (Final, error) {
	col, err := a.Store.Collection(req.Collection)
	if err != nil {
		return Final{}, err
	}
	question, query := retrievalQuery(req.Messages)
	if question == "" {
		return Final{}, fmt.Errorf("%w: the conversation has no user message", ErrNoQuestion)
	}
	topK := req.TopK
	if topK <= 0 {
		topK = a.TopK
	}
	ans, err := col.Search(ctx, Query{Text: query, Mode: req.Mode, TopK: topK})
	if err != nil {
		return Final{}, err
	}
	window := a.window(ctx, req.Options)
	msgs, sources, leftOut := buildPrompt(ans.Results, req.Messages, window)
	fin := Final{Sources: sources, LeftOut: leftOut, Window: window, Model: a.Model, Warning: ans.Warning}
	if err := onSources(sources); err != nil {
		return fin, err
	}
	opts := map[string]any{}
	for k, v := range req.Options {
		opts[k] = v
	}
	opts["num_ctx"] = window
	var text strings.Builder
	fin.Stats, err = a.Chat.Chat(ctx, a.Model, msgs, opts, func(tok string) error {
		text.WriteString(tok)
		return onToken(tok)
	})
	if err != nil {
		return fin, err
	}
	fin.Answer = text.String()
	for n := range citedNumbers(fin.Answer) {
		if n >= 1 && n <= len(fin.Sources) {
			fin.Sources[n-1].Cited = true
		}
	}
	return fin, nil
}

// window is the caller's num_ctx, else rag.num_ctx, capped by the model's own window.
func (a *Answerer) window(ctx context.Context, options map[string]any) int {
	w := a.NumCtx
	if v, ok := options["num_ctx"].(float64); ok && v >= 512 {
		w = int(v)
	}
	if n, err := a.Chat.ContextLength(ctx, a.Model); err == nil && n > 0 && n < w {
		w = n
	}
	return max(w, 512)
}

// retrievalQuery is the last user message, and the text searched: that message, with the
// user message before it when the last is a short follow-up ("and the warranty?").
func retrievalQuery(msgs []Message) (question, query string) {
	var users []string
	for _, m := range msgs {
		if m.Role == "user" && strings.TrimSpace(m.Content) != "" {
			users = append(users, strings.TrimSpace(m.Content))
		}
	}
	if len(users) == 0 {
		return "", ""
	}
	question = users[len(users)-1]
	query = question
	if len(strings.Fields(question)) < 6 && utf8.RuneCountInString(question) < 24 && len(users) > 1 {
		query = users[len(users)-2] + "\n" + question
	}
	return question, query
}

// estimateTokens over-estimates a text's tokens: about four ASCII characters per token,
// one per other character (CJK runs close to that).
func estimateTokens(s string) int {
	ascii, other := 0, 0
	for _, r := range s {
		if r < 0x80 {
			ascii++
		} else {
			other++
		}
	}
	return ascii/4 + other + 4
}

const instructions = `You answer questions using the numbered sources below, which come from the user's own documents. ` +
	`Cite every source you use by its number in square brackets, like [1] or [2][3]. ` +
	`If the sources do not contain the answer, say that they do not; do not make one up.`

// buildPrompt puts as many sources as fit in the window (keeping room for the answer and the
// recent conversation) into a system message, numbered in rank order.
func buildPrompt(results []Result, history []Message, window int) ([]Message, []Source, int) {
	reserve := min(window/4, 1024) // the answer
	var turns []Message
	histBudget := window / 4
	for i := len(history) - 1; i >= 0 && len(turns) < 8; i-- {
		m := history[i]
		if m.Role == "system" {
			continue
		}
		t := estimateTokens(m.Content)
		if len(turns) > 0 && t > histBudget {
			break
		}
		histBudget -= t
		turns = append([]Message{m}, turns...)
	}
	used := estimateTokens(instructions) + reserve
	for _, m := range turns {
		used += estimateTokens(m.Content)
	}
	var b strings.Builder
	var sources []Source
	for _, r := range results {
		s := Source{N: len(sources) + 1, Source: r.Source, Title: r.Title, Page: r.Page, Heading: r.Heading, Score: r.Score}
		entry := fmt.Sprintf("\n\n[%d] %s\n%s", s.N, s.Label(), r.Text)
		t := estimateTokens(entry)
		if used+t > window {
			if len(sources) > 0 {
				break
			}
			// Not even one whole source fits: give the start of the best one.
			room := max((window-used)*3, 200)
			if rs := []rune(entry); len(rs) > room {
				entry = string(rs[:room])
			}
			t = estimateTokens(entry)
		}
		used += t
		b.WriteString(entry)
		s.Excerpt = excerpt(r.Text, 240)
		sources = append(sources, s)
	}
	sys := instructions
	if len(sources) == 0 {
		sys += "\n\nNo source matched the question: say that the documents do not answer it."
	} else {
		sys += "\n\nSources:" + b.String()
	}
	msgs := append([]Message{{Role: "system", Content: sys}}, turns...)
	if sources == nil {
		sources = []Source{}
	}
	return msgs, sources, len(results) - len(sources)
}

func excerpt(s string, n int) string {
	rs := []rune(strings.Join(strings.Fields(s), " "))
	if len(rs) <= n {
		return string(rs)
	}
	return string(rs[:n]) + "…"
}

var citeRE = regexp.MustCompile(`\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]`)

// citedNumbers are the source numbers an answer cites: [1], [2][3], [1, 4].
func citedNumbers(answer string) map[int]bool {
	out := map[int]bool{}
	for _, m := range citeRE.FindAllStringSubmatch(answer, -1) {
		for _, part := range strings.FieldsFunc(m[1], func(r rune) bool { return r == ',' || r == ';' || r == ' ' }) {
			if n, err := strconv.Atoi(part); err == nil {
				out[n] = true
			}
		}
	}
	return out
}
