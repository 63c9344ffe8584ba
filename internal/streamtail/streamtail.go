// Package streamtail reads token counts from the end of a model's answer, shared by the
// router (agents) and the relay: Ollama's final chunk (prompt_eval_count, eval_count,
// eval_duration) or OpenAI's usage object. Keep holds the tail of a stream as it passes, so the
// whole answer is never held. It imports nothing of hearth.
package streamtail

import (
	"bytes"
	"math"
	"time"
)

const tailSize = 4096

// Keep appends p to tail, keeping about the last 4 KiB: enough to read a response's final
// token counts (TokenCounts) without holding the whole answer.
func Keep(tail, p []byte) []byte {
	if len(p) >= tailSize {
		return append(tail[:0], p[len(p)-tailSize:]...)
	}
	if len(tail)+len(p) > 2*tailSize {
		keep := tailSize - len(p)
		tail = append(tail[:0], tail[len(tail)-keep:]...)
	}
	return append(tail, p...)
}

// TokenCounts reads prompt and generated token counts from the end of a response: Ollama's
// final chunk (prompt_eval_count, eval_count, eval_duration) or OpenAI usage.
func TokenCounts(tail []byte) (prompt, generated int64, evalTime time.Duration, ok bool) {
	if n, ok := LastInt(tail, `"eval_count":`); ok {
		p, _ := LastInt(tail, `"prompt_eval_count":`)
		d, _ := LastInt(tail, `"eval_duration":`)
		return p, n, time.Duration(d), true
	}
	if n, ok := LastInt(tail, `"completion_tokens":`); ok {
		p, _ := LastInt(tail, `"prompt_tokens":`)
		return p, n, 0, true
	}
	return 0, 0, 0, false
}

// LastInt reads the non-negative integer after the last occurrence of key; false when there
// is none or it does not fit in an int64.
func LastInt(b []byte, key string) (int64, bool) {
	i := bytes.LastIndex(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := bytes.TrimLeft(b[i+len(key):], " ")
	var n int64
	end := 0
	for ; end < len(rest) && rest[end] >= '0' && rest[end] <= '9'; end++ {
		d := int64(rest[end] - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, end > 0
}
