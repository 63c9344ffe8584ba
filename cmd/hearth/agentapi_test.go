package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Every operator command reads an agent's errors the same way: hearth's {"error": "..."},
// OpenAI's {"error": {"message": ...}}, or a plain body.
func TestAgentAPIQuotesTheAgentsMessage(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"error":"unknown node \"nope\""}`, `unknown node "nope"`},
		{`{"error":{"message":"model 'x' not found","type":"invalid_request_error"}}`, `model 'x' not found`},
		{"upstream went away\n", "upstream went away"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer k1" {
				t.Errorf("Authorization %q, want the --key", r.Header.Get("Authorization"))
			}
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(tc.body))
		}))
		a := agentAPI{url: srv.URL, key: "k1"}
		err := a.callJSON(t.Context(), http.MethodGet, "", "/hearth/v1/cluster", nil, nil)
		want := "the agent at " + srv.URL + " answered 404 Not Found: " + tc.want
		if err == nil || err.Error() != want {
			t.Errorf("body %q: error %v, want %q", tc.body, err, want)
		}
		srv.Close()
	}
}

func TestAgentAPIKeyFromTheEnvironment(t *testing.T) {
	t.Setenv("HEARTH_API_KEY", "from-env")
	if k := (&agentAPI{}).apiKey(); k != "from-env" {
		t.Errorf("apiKey() = %q, want $HEARTH_API_KEY", k)
	}
	if k := (&agentAPI{key: "flag"}).apiKey(); k != "flag" {
		t.Errorf("apiKey() = %q, want --key over the environment", k)
	}
}
