package tunnel

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	plugin "github.com/fatedier/frp/pkg/plugin/server"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

func tunnelHomeProxy(channel, runID string) plugin.NewProxyContent {
	c := plugin.NewProxyContent{User: plugin.UserInfo{RunID: runID}}
	c.ProxyName, c.ProxyType = "home-"+channel, "tcp"
	c.Metas = map[string]string{frpMetaKind: "home", frpMetaChannel: channel}
	return c
}

func tunnelSiteProxy(channel, name, host, auth, runID string) plugin.NewProxyContent {
	c := plugin.NewProxyContent{User: plugin.UserInfo{RunID: runID}}
	c.ProxyName, c.ProxyType = "site-"+channel+"."+name, "tcp"
	c.Metas = map[string]string{frpMetaKind: "site", frpMetaChannel: channel, frpMetaName: name, frpMetaHost: host, frpMetaAuth: auth}
	return c
}

func TestTunnelRouteShapes(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*plugin.NewProxyContent)
		base   plugin.NewProxyContent
		host   string
		reason string // "" = admitted
	}{
		{"home", nil, tunnelHomeProxy("home", "r1"), "home.home.hearth.invalid", ""},
		{"site", nil, tunnelSiteProxy("home", "webui", "Chat.Example.com", "token", "r1"), "chat.example.com", ""},
		{"http proxy", func(c *plugin.NewProxyContent) { c.ProxyType = "http" }, tunnelHomeProxy("home", "r1"), "",
			`proxy type "http": the hearth relay carries tcp proxies only`},
		{"home under another name", func(c *plugin.NewProxyContent) { c.ProxyName = "home-cabin" }, tunnelHomeProxy("home", "r1"), "",
			`home channel "home" is proxy "home-home"`},
		{"bad channel", nil, tunnelHomeProxy("Home", "r1"), "", `metadata hearth_channel "Home": use lower-case letters, digits and dashes`},
		{"no kind", func(c *plugin.NewProxyContent) { delete(c.Metas, frpMetaKind) }, tunnelHomeProxy("home", "r1"), "",
			`metadata hearth_kind "": want "home" or "site"`},
		{"site auth", nil, tunnelSiteProxy("home", "webui", "chat.example.com", "basic", "r1"), "",
			`site "webui": metadata hearth_auth must be "token" or "none"`},
		{"site on an internal host", nil, tunnelSiteProxy("home", "webui", "home.home.hearth.invalid", "none", "r1"), "",
			`site "webui": host "home.home.hearth.invalid" is not a public host name`},
		{"group", func(c *plugin.NewProxyContent) { c.Group = "g" }, tunnelHomeProxy("home", "r1"), "",
			"a hearth proxy has no load balancing group and no bandwidth limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.base
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			rt, reason := parseTunnelRoute(&c)
			if reason != tt.reason {
				t.Fatalf("reason %q, want %q", reason, tt.reason)
			}
			if reason == "" && rt.host != tt.host {
				t.Errorf("host %q, want %q", rt.host, tt.host)
			}
		})
	}
}

// TestTunnelTableOrdering covers frps' asynchronous CloseProxy: the close of a session's
// old registration may arrive after the same session registered the proxy again. The home
// channel is connected since its agent's ping said so.
func TestTunnelTableOrdering(t *testing.T) {
	rs := newTunnelTable("token", slog.New(slog.DiscardHandler))
	clk := hearthtest.NewClock()
	rs.now = clk.Now
	since := func(want time.Time, online bool) {
		t.Helper()
		if got, on := rs.channelSince("home"); !got.Equal(want) || on != online {
			t.Errorf("channel since %v (online %v), want %v (online %v)", got, on, want, online)
		}
	}
	register := func(c plugin.NewProxyContent) string { return rs.register(&c) }

	if r := register(tunnelHomeProxy("home", "r1")); r != "" || rs.channel("home") {
		t.Fatalf("first registration: %q, channel %v before the agent said it is ready", r, rs.channel("home"))
	}
	since(time.Time{}, false)
	clk.Advance(time.Second)
	rs.ready("r2")
	if rs.channel("home") {
		t.Fatal("another session's ping made the channel ready")
	}
	rs.ready("r1")
	if !rs.channel("home") || rs.addr(HomeHost("home")) == "" {
		t.Fatal("the channel is not ready after its agent's ping")
	}
	connected := clk.Now()
	clk.Advance(time.Minute)
	rs.ready("r1") // the next ping: still the same connection
	since(connected, true)
	if r := register(tunnelHomeProxy("home", "r2")); r != `channel "home" is already connected from another agent` {
		t.Errorf("another session's registration: %q", r)
	}
	first := rs.addr(HomeHost("home"))
	if r := register(tunnelHomeProxy("home", "r1")); r != "" { // r1 reconnected before its old close came
		t.Fatalf("re-registration: %q", r)
	}
	rs.ready("r1")
	if rs.addr(HomeHost("home")) == first {
		t.Error("re-registration kept the old port")
	}
	reconnected := clk.Now()
	since(reconnected, true)
	clk.Advance(time.Minute)
	rs.unregister("home-home", "r1") // the late close of the first registration
	if !rs.channel("home") {
		t.Fatal("a late close took down the new registration")
	}
	since(reconnected, true)
	rs.unregister("home-home", "r2") // not the owner
	if !rs.channel("home") {
		t.Fatal("another session's close took down the registration")
	}
	rs.unregister("home-home", "r1")
	if rs.channel("home") || rs.addr(HomeHost("home")) != "" {
		t.Fatal("the channel is still there after its close")
	}
	since(time.Time{}, false)

	if r := register(tunnelSiteProxy("home", "webui", "chat.example.com", "token", "r1")); r != "" {
		t.Fatal(r)
	}
	rs.ready("r1")
	if got := rs.list(); len(got) != 1 || !got[0].Online {
		t.Errorf("sites: %+v", got)
	}
	if r := register(tunnelSiteProxy("cabin", "webui", "chat.example.com", "none", "r3")); r != `host chat.example.com is already served by site "webui" of channel "home"` {
		t.Errorf("second site on the same host: %q", r)
	}
	rs.unregister("site-home.webui", "r1")
	if got := rs.list(); len(got) != 1 || got[0] != (Site{Host: "chat.example.com", Name: "webui", Channel: "home", Auth: "token"}) {
		t.Errorf("sites after the site left: %+v", got)
	}
}

func TestTunnelPluginCalls(t *testing.T) {
	var logs bytes.Buffer
	rs := newTunnelTable("right-token", slog.New(slog.NewTextHandler(&logs, nil)))
	call := func(op string, content any) plugin.Response {
		body, _ := json.Marshal(plugin.Request{Version: plugin.APIVersion, Op: op, Content: content})
		rec := httptest.NewRecorder()
		rs.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
		var resp plugin.Response
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &resp) != nil {
			t.Fatalf("%s: %d %s", op, rec.Code, rec.Body)
		}
		return resp
	}
	login := plugin.LoginContent{ClientAddress: "203.0.113.7:4242"}
	login.Timestamp, login.PrivilegeKey, login.Hostname = 1700000000, "0123456789abcdef0123456789abcdef", "nas"
	if r := call(plugin.OpLogin, login); !r.Reject || !strings.Contains(r.RejectReason, "wrong tunnel token") {
		t.Errorf("login with a wrong key: %+v", r)
	}
	if !strings.Contains(logs.String(), "tunnel login refused") || !strings.Contains(logs.String(), "203.0.113.7") {
		t.Errorf("refusal not logged with the address: %s", logs.String())
	}
	r := call(plugin.OpNewProxy, tunnelHomeProxy("home", "r1"))
	content, _ := json.Marshal(r.Content)
	var np plugin.NewProxyContent
	if r.Reject || r.Unchange || json.Unmarshal(content, &np) != nil || np.RemotePort == 0 || np.ProxyName != "home-home" {
		t.Fatalf("NewProxy answer %+v", r)
	}
	closing := plugin.CloseProxyContent{User: plugin.UserInfo{RunID: "r1"}}
	closing.ProxyName = "home-home"
	if rs.channel("home") {
		t.Error("the channel is ready before the agent's ping")
	}
	call(plugin.OpPing, plugin.PingContent{User: plugin.UserInfo{RunID: "r1"}})
	if !rs.channel("home") {
		t.Error("the channel is not ready after the agent's ping")
	}
	call(plugin.OpCloseProxy, closing)
	if rs.channel("home") {
		t.Error("the channel is still there after CloseProxy")
	}
}
