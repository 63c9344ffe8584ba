package streamtail

import (
	"bytes"
	"testing"
	"time"
)

func TestTokenCounts(t *testing.T) {
	tests := []struct {
		tail        string
		prompt, gen int64
		evalTime    time.Duration
		ok          bool
	}{
		{`{"done":false}` + "\n" + `{"done":true,"prompt_eval_count":12,"eval_count":34,"eval_duration":5000}`, 12, 34, 5000, true},
		{`{"eval_count":1}{"eval_count": 7}`, 0, 7, 0, true},
		{`data: {"usage":{"prompt_tokens":3,"completion_tokens":9}}`, 3, 9, 0, true},
		{`{"eval_count":9223372036854775807}`, 0, 9223372036854775807, 0, true},
		{`{"eval_count":9223372036854775808,"completion_tokens":2}`, 0, 2, 0, true},
		{`{"eval_count":-1}`, 0, 0, 0, false},
		{`{"eval_count":}`, 0, 0, 0, false},
		{`{"done":true}`, 0, 0, 0, false},
	}
	for _, tt := range tests {
		p, g, d, ok := TokenCounts([]byte(tt.tail))
		if p != tt.prompt || g != tt.gen || d != tt.evalTime || ok != tt.ok {
			t.Errorf("%s: got %d %d %v %v", tt.tail, p, g, d, ok)
		}
	}
}

func TestKeep(t *testing.T) {
	var tail []byte
	for i := 0; i < 100; i++ {
		tail = Keep(tail, bytes.Repeat([]byte{'x'}, 100))
	}
	tail = Keep(tail, []byte(`{"eval_count":5}`))
	if len(tail) > 2*tailSize || !bytes.HasSuffix(tail, []byte(`{"eval_count":5}`)) {
		t.Fatalf("tail of %d bytes, ending %q", len(tail), tail[max(0, len(tail)-20):])
	}
	if got := Keep(nil, bytes.Repeat([]byte{'y'}, 3*tailSize)); len(got) != tailSize {
		t.Fatalf("one large write kept %d bytes, want %d", len(got), tailSize)
	}
}
