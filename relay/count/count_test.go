package count

import "testing"

func TestEstimate(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int
	}{
		{"", 0},
		{"a", 1},
		{"Hello, world!", 4}, // 13 characters
		{"The quick brown fox jumps over the lazy dog.", 11},
		{"你好世界", 4},
		{"こんにちは", 5},
		{"안녕하세요", 5},
		{"Привет, мир", 5}, // 9 Cyrillic letters at 2 per token, 2 ASCII characters
		{"ok 👍", 2},
		{"混合 text", 4},
	} {
		if got := Estimate(tc.text); got != tc.want {
			t.Errorf("Estimate(%q) = %d, want %d", tc.text, got, tc.want)
		}
	}
}
