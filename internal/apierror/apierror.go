// Package apierror is the error vocabulary of hearth's two API dialects, shared by the router
// (agents) and the relay: the dialect a caller speaks, an error chosen for a person to act on,
// and how it is written in that dialect. It imports nothing of hearth.
package apierror

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Dialect is the API family a caller speaks; errors are written in it.
type Dialect int

const (
	// Ollama errors are {"error":"message"}.
	Ollama Dialect = iota
	// OpenAI errors are {"error":{"message","type","param","code"}}.
	OpenAI
)

// DialectOf tells the dialect from the request path; the web app's API (/app/v1/) speaks
// OpenAI's, as the /v1 calls behind it do.
func DialectOf(path string) Dialect {
	if strings.HasPrefix(path, "/v1/") || path == "/v1" || strings.HasPrefix(path, "/app/v1/") {
		return OpenAI
	}
	return Ollama
}

// Error is an error answer chosen for a person to act on.
type Error struct {
	Status int
	// Code is the OpenAI error code ("model_not_found", "model_unavailable", ...).
	Code    string
	Message string
	// RetryAfter, in seconds, is sent as Retry-After when > 0.
	RetryAfter int
}

func (e *Error) Error() string { return e.Message }

func (e *Error) openAIType() string {
	switch {
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return "authentication_error"
	case e.Status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case e.Status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// Write answers with e in dialect d.
func Write(w http.ResponseWriter, d Dialect, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(Body(d, e))
}

// Body is e as the JSON body of dialect d, newline-terminated.
func Body(d Dialect, e *Error) []byte {
	var v any
	if d == OpenAI {
		type detail struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code,omitempty"`
		}
		v = struct {
			Error detail `json:"error"`
		}{detail{Message: e.Message, Type: e.openAIType(), Code: e.Code}}
	} else {
		// The ollama CLI reads a 401 into its sign-in error, which keeps only "status" and
		// "signin_url" and otherwise prints "something went wrong, please see the ollama server
		// logs"; "status" carries the message there so that the person sees what to fix.
		var status string
		if e.Status == http.StatusUnauthorized {
			status = e.Message
		}
		v = struct {
			Error  string `json:"error"`
			Status string `json:"status,omitempty"`
		}{e.Message, status}
	}
	b, _ := json.Marshal(v) // plain strings: cannot fail
	return append(b, '\n')
}

// StreamEvent is written when a stream breaks after its first byte: the status is gone, so
// the error travels as one more event the client's parser understands (an SSE data line for
// contentType text/event-stream, else an NDJSON line).
func StreamEvent(contentType string, e *Error) []byte {
	if strings.HasPrefix(contentType, "text/event-stream") {
		return append(append([]byte("data: "), Body(OpenAI, e)...), '\n')
	}
	return Body(Ollama, e)
}

// RetrySeconds is d as a Retry-After: whole seconds, rounded up, at least 1.
func RetrySeconds(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }
