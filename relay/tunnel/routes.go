package tunnel

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fatedier/frp/pkg/auth"
	plugin "github.com/fatedier/frp/pkg/plugin/server"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/tunnelmeta"
)

// What an agent's frp proxies say about themselves (metadatas): internal/tunnelmeta, which
// agent.Tunnel writes.
const (
	frpMetaKind    = tunnelmeta.Kind    // "home" or "site"
	frpMetaChannel = tunnelmeta.Channel // the agent's tunnel.name
	frpMetaName    = tunnelmeta.Name    // a site's tunnel.expose[].name
	frpMetaHost    = tunnelmeta.Host    // a site's tunnel.expose[].host
	frpMetaAuth    = tunnelmeta.Auth    // a site's tunnel.expose[].auth: "token" or "none"
)

// homeDomain holds the internal names of home channels; ".invalid" never resolves.
const homeDomain = ".home.hearth.invalid"

// HomeHost is the internal host name of home channel name: Forward to it reaches that
// agent's API.
func HomeHost(name string) string { return name + homeDomain }

// Site is a home web app that an agent exposes through the tunnel (tunnel.expose).
type Site struct {
	Host    string // public host name, e.g. chat.example.com
	Name    string // the expose entry's name
	Channel string // the agent's tunnel.name
	Auth    string // "token" or "none"
	Online  bool   // connected through the tunnel now
}

// tunnelRoute is one frp TCP proxy that an agent registered: frps listens for it on a
// loopback port that the relay chose, and splices each connection to the agent's service.
type tunnelRoute struct {
	proxy string // frp proxy name: "home-<channel>" or "site-<channel>.<name>"
	runID string // the frp client session that owns it
	kind  string
	host  string // HomeHost(channel) or the site's public host
	addr  string // 127.0.0.1:port
	site  Site
	// ready: the agent said, with a Ping after frps accepted the proxy, that its end runs.
	// Until then frps already listens, but the agent turns connections away.
	ready bool
	since time.Time // when it became ready: the home channel "connected since"
}

// tunnelTable is what the tunnel carries now, learnt from frps' server plugin calls (Login,
// NewProxy, Ping, CloseProxy), which frps makes to hooks on loopback as they happen. frps keeps
// its own table private; its dashboard would need frp's process-wide metrics, which race
// when a process runs more than one frps (tests do).
type tunnelTable struct {
	log   *slog.Logger
	login *auth.TokenAuthSetterVerifier

	mu      sync.RWMutex
	byProxy map[string]*tunnelRoute
	byHost  map[string]*tunnelRoute
	// pendingClose counts closes still in flight for proxies that their owner already
	// registered again: frps notifies CloseProxy asynchronously, so after a quick
	// reconnection the close of the old registration can arrive after the new one.
	pendingClose map[string]int
	sites        map[string]Site // every site seen since Run started, by host
	onChange     func()          // called, unlocked, when a route goes away
	now          func() time.Time
}

func newTunnelTable(token string, logger *slog.Logger) *tunnelTable {
	rs := &tunnelTable{log: logger, login: auth.NewTokenAuth(nil, token), onChange: func() {}, now: time.Now}
	rs.reset()
	return rs
}

func (rs *tunnelTable) reset() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.byProxy = map[string]*tunnelRoute{}
	rs.byHost = map[string]*tunnelRoute{}
	rs.pendingClose = map[string]int{}
	rs.sites = map[string]Site{}
}

// addr is where frps listens for host's route, "" when host is not connected.
func (rs *tunnelTable) addr(host string) string {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	if rt := rs.byHost[host]; rt != nil && rt.ready {
		return rt.addr
	}
	return ""
}

func (rs *tunnelTable) channel(name string) bool {
	_, online := rs.channelSince(name)
	return online
}

// channelSince is when home channel name became ready, and whether it is now.
func (rs *tunnelTable) channelSince(name string) (time.Time, bool) {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	if rt := rs.byProxy["home-"+name]; rt != nil && rt.ready {
		return rt.since, true
	}
	return time.Time{}, false
}

func (rs *tunnelTable) list() []Site {
	rs.mu.RLock()
	out := make([]Site, 0, len(rs.sites))
	for host, s := range rs.sites {
		rt := rs.byHost[host]
		s.Online = rt != nil && rt.ready
		out = append(out, s)
	}
	rs.mu.RUnlock()
	slices.SortFunc(out, func(a, b Site) int { return strings.Compare(a.Host, b.Host) })
	return out
}

// waitEmpty waits up to limit for every proxy to be unregistered.
func (rs *tunnelTable) waitEmpty(limit time.Duration) {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		rs.mu.RLock()
		n := len(rs.byProxy)
		rs.mu.RUnlock()
		if n == 0 {
			return
		}
	}
}

// ServeHTTP answers frps' server plugin calls.
func (rs *tunnelTable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Op      string          `json:"op"`
		Content json.RawMessage `json:"content"`
	}
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	resp := plugin.Response{Unchange: true}
	var err error
	switch req.Op {
	case plugin.OpLogin:
		var c plugin.LoginContent
		if err = json.Unmarshal(req.Content, &c); err == nil {
			resp.RejectReason = rs.checkLogin(&c)
		}
	case plugin.OpNewProxy:
		var c plugin.NewProxyContent
		if err = json.Unmarshal(req.Content, &c); err == nil {
			if resp.RejectReason = rs.register(&c); resp.RejectReason == "" {
				resp.Unchange, resp.Content = false, c // with the port chosen here
			}
		}
	case plugin.OpPing:
		var c plugin.PingContent
		if err = json.Unmarshal(req.Content, &c); err == nil {
			rs.ready(c.User.RunID)
		}
	case plugin.OpCloseProxy:
		var c plugin.CloseProxyContent
		if err = json.Unmarshal(req.Content, &c); err == nil {
			rs.unregister(c.ProxyName, c.User.RunID)
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	resp.Reject = resp.RejectReason != ""
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// checkLogin verifies the token with frp's own verifier before frps does, so that a refusal
// is logged here with the agent's address, and the agent reads a reason it can act on.
func (rs *tunnelTable) checkLogin(c *plugin.LoginContent) string {
	if err := rs.login.VerifyLogin(&c.Login); err != nil {
		rs.log.Warn("tunnel login refused: wrong tunnel token", "remote", c.ClientAddress,
			"hostname", c.Hostname, "channel", c.Metas[frpMetaChannel])
		return "wrong tunnel token: the agent's tunnel.token is not the relay's tunnel.token"
	}
	rs.log.Debug("tunnel login", "remote", c.ClientAddress, "hostname", c.Hostname,
		"channel", c.Metas[frpMetaChannel], "frp_version", c.Version)
	return ""
}

// register admits a proxy that is a home channel or a site, gives it a loopback port (frps
// binds c.RemotePort on 127.0.0.1), and refuses what hearth's agents never send and names
// that another agent holds.
func (rs *tunnelTable) register(c *plugin.NewProxyContent) string {
	rt, reason := parseTunnelRoute(c)
	if reason != "" {
		rs.log.Warn("tunnel proxy refused", "proxy", c.ProxyName, "reason", reason)
		return reason
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	replaces := false
	if cur := rs.byProxy[rt.proxy]; cur != nil {
		if cur.runID != rt.runID {
			reason = fmt.Sprintf("%s is already connected from another agent", describeRoute(cur))
			rs.log.Warn("tunnel proxy refused", "proxy", rt.proxy, "reason", reason)
			return reason
		}
		replaces = true
	}
	if other := rs.byHost[rt.host]; other != nil && other.proxy != rt.proxy {
		reason = fmt.Sprintf("host %s is already served by %s", rt.host, describeRoute(other))
		rs.log.Warn("tunnel proxy refused", "proxy", rt.proxy, "reason", reason)
		return reason
	}
	port, err := freeLoopbackPort()
	if err != nil {
		rs.log.Error("tunnel proxy refused", "proxy", rt.proxy, "err", err)
		return "the relay has no free port for it"
	}
	if replaces {
		rs.pendingClose[rt.proxy]++
	}
	c.RemotePort = port
	rt.addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	rs.byProxy[rt.proxy] = rt
	rs.byHost[rt.host] = rt
	if rt.kind == "site" {
		rs.sites[rt.host] = rt.site
	}
	return ""
}

// ready marks the routes of session runID ready: its agent has taken in frps' acceptance.
func (rs *tunnelTable) ready(runID string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, rt := range rs.byProxy {
		if rt.runID != runID || rt.ready {
			continue
		}
		rt.ready, rt.since = true, rs.now()
		if rt.kind == "site" {
			rs.log.Info("site online", "host", rt.host, "channel", rt.site.Channel, "name", rt.site.Name, "auth", rt.site.Auth)
		} else {
			rs.log.Info("home channel online", "channel", rt.site.Channel)
		}
	}
}

func (rs *tunnelTable) unregister(proxy, runID string) {
	rs.mu.Lock()
	if rs.pendingClose[proxy] > 0 {
		rs.pendingClose[proxy]--
		rs.mu.Unlock()
		return
	}
	rt := rs.byProxy[proxy]
	if rt == nil || rt.runID != runID {
		rs.mu.Unlock()
		return
	}
	delete(rs.byProxy, proxy)
	if rs.byHost[rt.host] == rt {
		delete(rs.byHost, rt.host)
	}
	rs.mu.Unlock()
	switch {
	case !rt.ready:
	case rt.kind == "site":
		rs.log.Info("site offline", "host", rt.host, "channel", rt.site.Channel)
	default:
		rs.log.Info("home channel offline", "channel", rt.site.Channel)
	}
	rs.onChange()
}

func describeRoute(rt *tunnelRoute) string {
	if rt.kind == "site" {
		return fmt.Sprintf("site %q of channel %q", rt.site.Name, rt.site.Channel)
	}
	return fmt.Sprintf("channel %q", rt.site.Channel)
}

// parseTunnelRoute checks a NewProxy against the two shapes agent.Tunnel registers.
func parseTunnelRoute(c *plugin.NewProxyContent) (*tunnelRoute, string) {
	if c.ProxyType != "tcp" {
		return nil, fmt.Sprintf("proxy type %q: the hearth relay carries tcp proxies only", c.ProxyType)
	}
	if c.Group != "" || c.BandwidthLimit != "" {
		return nil, "a hearth proxy has no load balancing group and no bandwidth limit"
	}
	channel := c.Metas[frpMetaChannel]
	if !config.ValidName(channel) {
		return nil, fmt.Sprintf("metadata %s %q: use lower-case letters, digits and dashes", frpMetaChannel, channel)
	}
	rt := &tunnelRoute{proxy: c.ProxyName, runID: c.User.RunID, kind: c.Metas[frpMetaKind],
		site: Site{Channel: channel}}
	switch rt.kind {
	case "home":
		if c.ProxyName != "home-"+channel {
			return nil, fmt.Sprintf("home channel %q is proxy %q", channel, "home-"+channel)
		}
		rt.host = HomeHost(channel)
	case "site":
		rt.host = strings.ToLower(c.Metas[frpMetaHost])
		rt.site.Name, rt.site.Auth = c.Metas[frpMetaName], c.Metas[frpMetaAuth]
		if !config.ValidName(rt.site.Name) || c.ProxyName != "site-"+channel+"."+rt.site.Name {
			return nil, fmt.Sprintf("a site is proxy \"site-<channel>.<name>\" with metadata %s", frpMetaName)
		}
		if rt.site.Auth != "token" && rt.site.Auth != "none" {
			return nil, fmt.Sprintf("site %q: metadata %s must be \"token\" or \"none\"", rt.site.Name, frpMetaAuth)
		}
		if rt.host == "" || strings.HasSuffix(rt.host, ".invalid") || strings.ContainsAny(rt.host, ":/ ") {
			return nil, fmt.Sprintf("site %q: host %q is not a public host name", rt.site.Name, rt.host)
		}
	default:
		return nil, fmt.Sprintf("metadata %s %q: want \"home\" or \"site\"", frpMetaKind, rt.kind)
	}
	rt.site.Host = rt.host
	return rt, ""
}
