package router

import (
	"net/http"

	"github.com/hearthlab/hearth/internal/apierror"
)

// The dialect errors live in internal/apierror, shared with the relay; these names keep the
// router's API as it was.

// Dialect is the API family a caller speaks; errors are written in it.
type Dialect = apierror.Dialect

const (
	// Ollama errors are {"error":"message"}.
	Ollama = apierror.Ollama
	// OpenAI errors are {"error":{"message","type","param","code"}}.
	OpenAI = apierror.OpenAI
)

// APIError is an error answer chosen for a person to act on.
type APIError = apierror.Error

// DialectOf tells the dialect from the request path.
func DialectOf(path string) Dialect { return apierror.DialectOf(path) }

// WriteError answers with e in dialect d.
func WriteError(w http.ResponseWriter, d Dialect, e *APIError) { apierror.Write(w, d, e) }

func streamErrorEvent(contentType string, e *APIError) []byte {
	return apierror.StreamEvent(contentType, e)
}
