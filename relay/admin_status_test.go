package relay

// The statuses of the token admin API: the client's mistakes are 4xx, the relay's own 500.
// The handlers are mounted on chi as relay.go mounts them, behind Admin.

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tokens/tokenstest"
)

type adminAnswer struct {
	status  int
	message string
	body    string
}

func newAdminTokensHandler(t *testing.T) (*tokens.Store, func(method, path, body string) adminAnswer) {
	t.Helper()
	clk := hearthtest.NewClock()
	st := tokenstest.Open(t, filepath.Join(t.TempDir(), "relay.db"), tokens.WithClock(clk.Now))
	rl := &Relay{store: st, log: slog.New(slog.DiscardHandler)}
	r := chi.NewRouter()
	r.Post("/admin/v1/tokens", rl.createToken)
	r.Delete("/admin/v1/tokens/{name}", rl.revokeToken)
	return st, func(method, path, body string) adminAnswer {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		a := adminAnswer{status: rec.Code, body: rec.Body.String()}
		if rec.Code >= 400 {
			var e struct {
				Error struct{ Message, Type string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Type == "" {
				t.Fatalf("%s %s: not an OpenAI error: %s", method, path, rec.Body)
			}
			a.message = e.Error.Message
		}
		return a
	}
}

func TestAdminTokenStatuses(t *testing.T) {
	_, do := newAdminTokensHandler(t)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		message                  string // empty with a 2xx
		prefix                   bool   // message is the start of the message
	}{
		{"create", "POST", "/admin/v1/tokens", `{"name":"laptop","expires":"30d"}`, 201, "", false},
		{"create a taken name", "POST", "/admin/v1/tokens", `{"name":"laptop"}`, 409, `a live token is already named "laptop" (tok_`, true},
		{"create with a bad name", "POST", "/admin/v1/tokens", `{"name":"no spaces please"}`, 400,
			`token name "no spaces please": use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (and not "tok_", which starts ids)`, false},
		{"create with a bad glob", "POST", "/admin/v1/tokens", `{"name":"tablet","models":["qwen3:[x"]}`, 400,
			`model glob "qwen3:[x": syntax error in pattern (use * and ? as in "qwen3:*")`, false},
		{"create with a bad ollama key", "POST", "/admin/v1/tokens", `{"name":"tablet","ollama_key":"not a key"}`, 400, "", true},
		{"create with a negative rpm", "POST", "/admin/v1/tokens", `{"name":"tablet","rpm":-1}`, 400, "token tablet: ", true},
		{"revoke", "DELETE", "/admin/v1/tokens/laptop", "", 204, "", false},
		{"revoke again", "DELETE", "/admin/v1/tokens/laptop", "", 409, "token laptop was already revoked on 2026-03-01 10:00 UTC: nothing to do", false},
		{"revoke an unknown token", "DELETE", "/admin/v1/tokens/nobody", "", 404, "no token named nobody", false},
	} {
		got := do(tc.method, tc.path, tc.body)
		okMessage := got.message == tc.message
		if tc.prefix {
			okMessage = strings.HasPrefix(got.message, tc.message) && len(got.message) > len(tc.message)
		}
		if got.status != tc.status || !okMessage {
			t.Errorf("%s: got %d %q %s\nwant %d %q (prefix %v)", tc.name, got.status, got.message, got.body, tc.status, tc.message, tc.prefix)
		}
	}
}

// A failure of the token database is the relay's, not the client's: 500, with a message that
// says where to look and no raw internal error.
func TestAdminTokenStatusesStoreClosed(t *testing.T) {
	st, do := newAdminTokensHandler(t)
	if got := do("POST", "/admin/v1/tokens", `{"name":"laptop"}`); got.status != 201 {
		t.Fatalf("create: %d %s", got.status, got.body)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		message                  string
	}{
		{"create", "POST", "/admin/v1/tokens", `{"name":"phone"}`, 500,
			`creating token "phone" failed in the relay's token database; the relay's log says why: try again`},
		// Validation needs no database: a bad spec is still the client's to fix.
		{"create with a bad name", "POST", "/admin/v1/tokens", `{"name":"-phone"}`, 400,
			`token name "-phone": use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (and not "tok_", which starts ids)`},
		{"revoke", "DELETE", "/admin/v1/tokens/laptop", "", 500,
			"revoking token laptop failed in the relay's token database; the relay's log says why: try again"},
	} {
		got := do(tc.method, tc.path, tc.body)
		if got.status != tc.status || got.message != tc.message {
			t.Errorf("%s: got %d %q\nwant %d %q", tc.name, got.status, got.message, tc.status, tc.message)
		}
	}
}
