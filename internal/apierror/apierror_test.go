package apierror

import (
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		path, want, retry string
		e                 Error
	}{
		{"/v1/chat/completions", `{"error":{"message":"model \"x\" is unavailable","type":"server_error","param":null,"code":"model_unavailable"}}` + "\n", "5",
			Error{Status: 503, Code: "model_unavailable", Message: `model "x" is unavailable`, RetryAfter: 5}},
		{"/v1/models", `{"error":{"message":"no token","type":"authentication_error","param":null}}` + "\n", "",
			Error{Status: 401, Message: "no token"}},
		{"/app/v1/generations/x/events", `{"error":{"message":"token revoked","type":"authentication_error","param":null,"code":"token_revoked"}}` + "\n", "",
			Error{Status: 401, Code: "token_revoked", Message: "token revoked"}},
		{"/api/tags", `{"error":"no key","status":"no key"}` + "\n", "",
			Error{Status: 401, Code: "missing_api_key", Message: "no key"}},
		{"/api/chat", `{"error":"slow down"}` + "\n", "",
			Error{Status: 429, Code: "rate_limited", Message: "slow down"}},
	} {
		w := httptest.NewRecorder()
		Write(w, DialectOf(tc.path), &tc.e)
		if w.Code != tc.e.Status || w.Body.String() != tc.want || w.Header().Get("Retry-After") != tc.retry {
			t.Errorf("%s: %d %q Retry-After %q", tc.path, w.Code, w.Body.String(), w.Header().Get("Retry-After"))
		}
	}
	e := &Error{Status: 502, Message: "cut"}
	if got := string(StreamEvent("text/event-stream", e)); got != `data: {"error":{"message":"cut","type":"server_error","param":null}}`+"\n\n" {
		t.Errorf("SSE event %q", got)
	}
	if got := string(StreamEvent("application/x-ndjson", e)); got != `{"error":"cut"}`+"\n" {
		t.Errorf("NDJSON event %q", got)
	}
}
