package rag

import (
	"context"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/rag/ragtest"
)

// fakeChat answers with a fixed text and records what it was asked.
type fakeChat struct {
	answer string
	ctxLen int
	got    []Message
	opts   map[string]any
}

func (f *fakeChat) Chat(_ context.Context, _ string, msgs []Message, opts map[string]any, onToken func(string) error) (ChatStats, error) {
	f.got, f.opts = msgs, opts
	for _, w := range strings.SplitAfter(f.answer, " ") {
		if err := onToken(w); err != nil {
			return ChatStats{}, err
		}
	}
	return ChatStats{PromptTokens: 10, CompletionTokens: 5}, nil
}

func (f *fakeChat) ContextLength(context.Context, string) (int, error) { return f.ctxLen, nil }

func TestAnswerCitesAndFitsTheWindow(t *testing.T) {
	s := openStore(t, t.TempDir(), &ragtest.HashEmbedder{Dims: 32}, "m", CollectionConfig{Name: "docs"})
	c, _ := s.Collection("docs")
	ctx := t.Context()
	for i, text := range []string{
		"The boiler pressure should stay between 1.2 and 1.5 bar.",
		"Boiler service is due every year in October.",
		"The boiler warranty lasts five years.",
	} {
		body := "# Boiler " + string(rune('A'+i)) + "\n\n" + text + " " + strings.Repeat("Boiler filler words pad this chunk. ", 30)
		if _, err := c.Put(ctx, string(rune('a'+i))+".md", "", []byte(body), nil); err != nil {
			t.Fatal(err)
		}
	}
	chat := &fakeChat{answer: "Keep it between 1.2 and 1.5 bar [1], and service it yearly [2].", ctxLen: 32768}
	a := &Answerer{Store: s, Chat: chat, Model: "tiny", NumCtx: 8192, TopK: 3}
	var sources []Source
	var text strings.Builder
	fin, err := a.Answer(ctx, AnswerRequest{Collection: "docs", Messages: []Message{{Role: "user", Content: "what about the boiler pressure and service?"}}},
		func(s []Source) error { sources = s; return nil }, func(tok string) error { text.WriteString(tok); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) != 3 || fin.LeftOut != 0 || fin.Window != 8192 || chat.opts["num_ctx"] != 8192 {
		t.Fatalf("sources %d left out %d window %d num_ctx %v", len(sources), fin.LeftOut, fin.Window, chat.opts["num_ctx"])
	}
	if text.String() != chat.answer || fin.Answer != chat.answer {
		t.Errorf("streamed %q", text.String())
	}
	cited := fin.Cited()
	if len(cited) != 2 || cited[0].N != 1 || cited[1].N != 2 || fin.Sources[2].Cited {
		t.Errorf("cited = %+v", cited)
	}
	block := fin.SourcesBlock()
	if !strings.Contains(block, "\n\nSources:\n[1] ") || strings.Contains(block, "[3]") {
		t.Errorf("sources block = %q", block)
	}
	if sys := chat.got[0]; sys.Role != "system" || !strings.Contains(sys.Content, "[1] ") || !strings.Contains(sys.Content, "Cite every source") {
		t.Errorf("system prompt = %q", sys.Content)
	}

	// A small window: the model's own is 1024, so not every source fits and the answer says so.
	chat.ctxLen = 1024
	fin, err = a.Answer(ctx, AnswerRequest{Collection: "docs", TopK: 10, Messages: []Message{{Role: "user", Content: "boiler pressure service warranty"}}},
		func([]Source) error { return nil }, func(string) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if fin.Window != 1024 || fin.LeftOut == 0 || len(fin.Sources) == 0 || len(fin.Sources)+fin.LeftOut < 6 {
		t.Errorf("window %d, %d sources, %d left out", fin.Window, len(fin.Sources), fin.LeftOut)
	}
	if note := fin.LeftOutNote(); !strings.Contains(note, "did not fit in the context window of 1024 tokens") {
		t.Errorf("note = %q", note)
	}
	if _, err := a.Answer(ctx, AnswerRequest{Collection: "nope", Messages: []Message{{Role: "user", Content: "x"}}}, nil, nil); err == nil || !strings.Contains(err.Error(), "no such collection") {
		t.Errorf("unknown collection: %v", err)
	}
}

func TestRetrievalQueryUsesRecentContext(t *testing.T) {
	q, query := retrievalQuery([]Message{{Role: "user", Content: "How long is the boiler warranty?"}, {Role: "assistant", Content: "Five years."}, {Role: "user", Content: "and service?"}})
	if q != "and service?" || query != "How long is the boiler warranty?\nand service?" {
		t.Errorf("question %q query %q", q, query)
	}
	if got := citedNumbers("see [1], [2][3] and [4, 5]; not [x]"); len(got) != 5 {
		t.Errorf("cited = %v", got)
	}
}
