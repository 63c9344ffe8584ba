package relay

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

// TestHealthChecksStayOutOfTheAccessLog: the systemd watchdog's probe and Docker's HEALTHCHECK
// ask /healthz every few seconds; a passing one is a debug line, a failing one and every other
// request an info line.
func TestHealthChecksStayOutOfTheAccessLog(t *testing.T) {
	var logs hearthtest.Logs
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	failing := false
	h := logRequests(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	get := func(path string) {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	get("/healthz")
	if s := logs.String(); s != "" {
		t.Fatalf("a passing health check was logged at info: %s", s)
	}
	get("/v1/models")
	failing = true
	get("/healthz")
	s := logs.String()
	if !strings.Contains(s, "path=/v1/models status=200") || !strings.Contains(s, "path=/healthz status=503") {
		t.Fatalf("the access log lacks a request or the failing health check:\n%s", s)
	}
}
