package modelname

import (
	"slices"
	"testing"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"llama3": "llama3:latest", " Llama3 ": "llama3:latest", "llama3:8b": "llama3:8b",
		"hf.co/org/model": "hf.co/org/model:latest", "localhost:5000/m": "localhost:5000/m:latest", "": "",
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		glob, model string
		want        bool
	}{
		{"qwen3:*", "qwen3", true},
		{"qwen3", "Qwen3:latest", true},
		{"Qwen/Qwen3-8B", "Qwen/Qwen3-8B", true},
		{"hf.co/*", "hf.co/org/model:q4", true},
		{"qwen3:*", "llama3", false},
		{"[", "[", true}, // the literal name, though the glob is malformed
		{"[", "x", false},
	} {
		if got := Match(tc.glob, tc.model); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.glob, tc.model, got)
		}
	}
	if !MatchAny([]string{"a:*", "qwen3:*"}, "qwen3") || MatchAny(nil, "qwen3") {
		t.Error("MatchAny")
	}
}

func TestNormalizeGlobs(t *testing.T) {
	got, err := NormalizeGlobs([]string{" Qwen3 ", "qwen3:latest", "", "llama3:*"})
	if err != nil || !slices.Equal(got, []string{"qwen3:latest", "llama3:*"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := NormalizeGlobs([]string{"qwen3:["}); err == nil || err.Error() != `model glob "qwen3:[": syntax error in pattern (use * and ? as in "qwen3:*")` {
		t.Fatalf("malformed glob: %v", err)
	}
}
