package chain

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/usage"
)

// allowAll lets every token use every model.
type allowAll struct{}

func (allowAll) CheckModel(http.ResponseWriter, *http.Request, string) bool { return true }

// usageRecords keeps what the chain reserves and records, in memory.
type usageRecords struct {
	mu      sync.Mutex
	settled []count.Usage
	records []usage.Record
}

func (u *usageRecords) Reserve(tokens.Token, string, int) (func(count.Usage), error) {
	return func(c count.Usage) { u.mu.Lock(); u.settled = append(u.settled, c); u.mu.Unlock() }, nil
}

func (u *usageRecords) Record(r usage.Record) {
	u.mu.Lock()
	u.records = append(u.records, r)
	u.mu.Unlock()
}

// TestChainNeedsNoStoreNorTunnel: with fakes for the token check and the usage log, and no
// tunnel, the chain serves from a vendor, falls back past a home that is not there, and
// settles and records what it served.
func TestChainNeedsNoStoreNorTunnel(t *testing.T) {
	vendor := hearthtest.NewVendor(t, hearthtest.VendorConfig{Model: "deepseek-chat"})
	cfg := config.DefaultRelay()
	cfg.Tunnel.Home = "home"
	cfg.Channels = []config.Channel{
		{Name: "home", Type: "home"},
		{Name: "deepseek", Type: "openai", BaseURL: vendor.URL, Keys: []string{"sk-test"}, Models: []string{"deepseek-chat"}, Priority: 10},
	}
	cfg.Routes = []config.Route{{Model: "qwen3:*", Fallback: []string{"deepseek/deepseek-chat"}}}
	cfg.Complete() // the channels' default timeouts
	ul := &usageRecords{}
	c := New(cfg, nil, allowAll{}, ul, nil)
	w := httptest.NewRecorder()
	c.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions",
		strings.NewReader(`{"model":"qwen3:14b","stream":false,"messages":[{"role":"user","content":"hi"}]}`)))
	if w.Code != 200 || w.Header().Get("X-Hearth-Channel") != "deepseek" || !strings.Contains(w.Body.String(), "from the vendor") {
		t.Fatalf("%d %s: %s", w.Code, w.Header().Get("X-Hearth-Channel"), w.Body.String())
	}
	ul.mu.Lock()
	defer ul.mu.Unlock()
	if len(ul.records) != 1 || ul.records[0].Channel != "deepseek" || ul.records[0].ServedModel != "deepseek-chat" ||
		len(ul.settled) != 1 || ul.settled[0].CompletionTokens != 3 {
		t.Fatalf("records %+v, settled %+v", ul.records, ul.settled)
	}
	if got := c.Channels(); len(got) != 2 || got[0].Type != "home" || got[0].State != "offline" || got[1].Type != "openai" {
		t.Fatalf("views %+v", got)
	}
}
