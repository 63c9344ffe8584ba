// Package count is the tokens one request used, as its upstream counted them or, when it did
// not, as estimated from the text: what the dialect translators report, the chain records
// and the usage log adds up. It imports nothing of hearth.
package count

import "unicode"

// Usage is the tokens one request used, as the upstream counted them or, when it did not,
// as estimated from the text.
type Usage struct {
	PromptTokens     int  `json:"prompt_tokens"`
	CompletionTokens int  `json:"completion_tokens"`
	Estimated        bool `json:"estimated,omitempty"`
}

// Estimate guesses how many tokens text is, for a vendor that reports no usage. No
// tokenizer vocabulary is available to hearth offline, so this is a heuristic close to the
// common BPE vocabularies (cl100k/o200k, Qwen, DeepSeek, Llama 3): about 4 characters per
// token for ASCII text, one token per CJK character (Han, kana, Hangul), 2 characters per
// token for other letters (Cyrillic, Greek, Arabic...) and one per other symbol (emoji).
// It rounds up: text that is not empty is at least one token.
func Estimate(text string) int {
	quarters := 0
	for _, r := range text {
		switch {
		case r < 0x80:
			quarters++
		case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul):
			quarters += 4
		case unicode.IsLetter(r) || unicode.IsMark(r):
			quarters += 2
		default:
			quarters += 4
		}
	}
	return (quarters + 3) / 4
}
