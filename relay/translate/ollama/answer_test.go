package ollama

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/relay/count"
)

// The answer text kept for the estimate is bounded, and what came past the bound still counts.
func TestDialectAnswerBoundsTheKeptText(t *testing.T) {
	piece := strings.Repeat("abcd", 1024) // 4 KiB: 1024 estimated tokens
	const pieces = 2 * dialectMaxText / 4096
	var src strings.Builder
	for range pieces {
		fmt.Fprintf(&src, "data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", piece)
	}
	src.WriteString("data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	var out strings.Builder
	a, err := NewAnswer(&out, "/api/chat", "m", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.translate(strings.NewReader(src.String())); err != nil {
		t.Fatal(err)
	}
	if a.text.Len() > dialectMaxText {
		t.Errorf("kept %d bytes of text, bound %d", a.text.Len(), dialectMaxText)
	}
	if got := count.Estimate(a.text.String()) + a.extraTokens; got != pieces*1024 {
		t.Errorf("estimated %d completion tokens, want %d", got, pieces*1024)
	}
	if n := strings.Count(out.String(), "\n"); n != pieces+1 {
		t.Errorf("%d lines written, want %d", n, pieces+1)
	}
}
