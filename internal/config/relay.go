package config

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// DefaultRelayPath is where `hearth relay` looks for its config when --config is not given.
const DefaultRelayPath = "/etc/hearth/relay.yaml"

// Relay is the configuration of `hearth relay` (relay.yaml) on a VPS.
type Relay struct {
	Listen  RelayListen `yaml:"listen"`
	Domains []string    `yaml:"domains"`
	ACME    ACME        `yaml:"acme"`
	TLS     TLSFiles    `yaml:"tls"`
	Tunnel  RelayTunnel `yaml:"tunnel"`
	// DB is the SQLite database for tokens (and later usage). Default
	// /var/lib/hearth/relay.db.
	DB string `yaml:"db"`
	// AdminKey guards /admin/v1/...; at least 16 characters. Required.
	AdminKey string      `yaml:"admin_key"`
	Limits   RelayLimits `yaml:"limits"`
	// Channels are where chat can be served: home (the tunnel) and vendor APIs.
	Channels []Channel `yaml:"channels"`
	// Routes say what replaces a model when no channel serving it can: the first route whose
	// model glob matches gives the fallbacks, "channel/model", tried in order.
	Routes []Route `yaml:"routes"`
	// Prices per million tokens by model glob, for cost quotas and `hearth usage`.
	Prices []Price `yaml:"prices"`
	// Usage is how requests are recorded.
	Usage UsageConfig `yaml:"usage"`
}

// Channel is one upstream: home, an OpenAI-compatible vendor, Anthropic or a remote Ollama.
type Channel struct {
	// Name identifies the channel in routes, headers and usage (letters, digits, dashes).
	Name string `yaml:"name"`
	// Type is "home", "openai", "anthropic" or "ollama".
	Type string `yaml:"type"`
	// BaseURL is the API root: "https://api.deepseek.com/v1" (openai), default
	// "https://api.anthropic.com" (anthropic), "http://host:11434" (ollama). Not for home.
	BaseURL string `yaml:"base_url"`
	// Key is the API key; Keys are several, used in turn. Not for home.
	Key  string   `yaml:"key"`
	Keys []string `yaml:"keys"`
	// Models the channel serves: names or globs ("deepseek-*"). Default: all for home (the
	// cluster's own list decides), none otherwise.
	Models []string `yaml:"models"`
	// Map renames a requested model to the channel's own: {gpt-4o: openai/gpt-4o-2024-08-06}.
	Map map[string]string `yaml:"map"`
	// Priority orders channels: lower first. Default 0.
	Priority int `yaml:"priority"`
	// Weight shares traffic among channels of one priority. Default 1.
	Weight int `yaml:"weight"`
	// Timeouts bound the calls. Defaults: connect 5s, first byte 60s, idle 60s.
	Timeouts ChannelTimeouts `yaml:"timeouts"`
	// Headers are added to every upstream request (e.g. OpenRouter's HTTP-Referer).
	Headers map[string]string `yaml:"headers"`
	// ProbeModel is the model the periodic health probe asks for (a cheap one). Default: no
	// probe for vendors; home is probed through its tunnel state.
	ProbeModel string `yaml:"probe_model"`
	// ProbeInterval is how often the probe runs. Default 1m.
	ProbeInterval time.Duration `yaml:"probe_interval"`
}

// ChannelTimeouts bound one upstream call.
type ChannelTimeouts struct {
	Connect time.Duration `yaml:"connect"`
	// FirstByte bounds the wait for a stream's first chunk. Default 60s; 10m for home, where
	// it may wait for a cold model load from NFS.
	FirstByte time.Duration `yaml:"first_byte"`
	// Idle bounds the wait between a stream's chunks. Default 60s.
	Idle time.Duration `yaml:"idle"`
	// Answer bounds a non-streamed answer, which arrives only once it is whole (after a
	// cold load from NFS, perhaps, and the whole generation). Default 10m.
	Answer time.Duration `yaml:"answer"`
}

// Route gives the fallbacks for models matching a glob.
type Route struct {
	Model    string   `yaml:"model"`
	Fallback []string `yaml:"fallback"`
}

// Price is the cost of a model's tokens, in any currency unit per million tokens.
type Price struct {
	Model      string  `yaml:"model"`
	Prompt     float64 `yaml:"prompt"`
	Completion float64 `yaml:"completion"`
}

// UsageConfig is how usage records are written.
type UsageConfig struct {
	// FlushInterval is how often buffered records are written. Default 1s.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Retention drops records older than this. Default 400 days (13 months of quotas).
	Retention time.Duration `yaml:"retention"`
}

// RelayListen are the public listeners.
type RelayListen struct {
	// HTTPS serves the API, the sites and TLS-ALPN-01 challenges. Default ":443".
	HTTPS string `yaml:"https"`
	// HTTP serves HTTP-01 challenges and redirects everything else to HTTPS. Default ":80";
	// "" turns it off (then only TLS-ALPN-01 can get certificates).
	HTTP string `yaml:"http"`
}

// ACME is how certificates are obtained and renewed.
type ACME struct {
	// Email is given to the CA for expiry notices. Default none.
	Email string `yaml:"email"`
	// CA is the ACME directory URL. Default "" = Let's Encrypt production.
	CA string `yaml:"ca"`
	// CARoot is a PEM file of roots to trust for the CA's own HTTPS (a private or test CA).
	CARoot string `yaml:"ca_root"`
	// Storage holds keys and certificates. Default /var/lib/hearth/certs.
	Storage string `yaml:"storage"`
	// Challenges are the ACME challenge types to use: "http-01", "tls-alpn-01".
	// Default both.
	Challenges []string `yaml:"challenges"`
}

// TLSFiles is a certificate the user brings; when set, ACME is not used.
type TLSFiles struct {
	// Cert is a PEM certificate chain file.
	Cert string `yaml:"cert"`
	// Key is the PEM private key file.
	Key string `yaml:"key"`
}

// RelayTunnel is the frp server that home agents connect to.
type RelayTunnel struct {
	// Bind is where agents connect (TLS is always required). Default ":7000".
	Bind string `yaml:"bind"`
	// Token authenticates agents; at least 16 characters. Required.
	Token string `yaml:"token"`
	// Home is the channel name (an agent's tunnel.name) whose cluster serves the public
	// /v1 and /api routes. Default "home".
	Home string `yaml:"home"`
}

// RelayLimits protect the relay from abuse and mistakes.
type RelayLimits struct {
	// MaxBody is the largest request body accepted on the API. Default "64MiB".
	MaxBody ByteSize `yaml:"max_body"`
	// RequestsPerMinute is each token's request rate limit. Default 120.
	RequestsPerMinute int `yaml:"requests_per_minute"`
	// IPRequestsPerMinute is each client address's request rate limit, whatever the tokens
	// (an IPv6 /64 counts as one address). Default 600: a household shares one.
	IPRequestsPerMinute int `yaml:"ip_requests_per_minute"`
	// AuthFailures from one IP within AuthWindow block that IP for AuthBlock. Defaults 10,
	// 1m, 15m.
	AuthFailures int           `yaml:"auth_failures"`
	AuthWindow   time.Duration `yaml:"auth_window"`
	AuthBlock    time.Duration `yaml:"auth_block"`
	// ReadTimeout bounds how long a client may take to send one request, headers and body:
	// a sender that stalls (or trickles, Slowloris) is cut instead of holding a connection
	// for ever. Answers may stream for longer. Default 5m.
	ReadTimeout time.Duration `yaml:"read_timeout"`
}

// DefaultRelay is the one place the relay's defaults live.
func DefaultRelay() Relay {
	return Relay{
		Listen:   RelayListen{HTTPS: ":443", HTTP: ":80"},
		ACME:     ACME{Storage: "/var/lib/hearth/certs", Challenges: []string{"http-01", "tls-alpn-01"}},
		Tunnel:   RelayTunnel{Bind: ":7000", Home: "home"},
		DB:       "/var/lib/hearth/relay.db",
		Limits:   RelayLimits{MaxBody: 64 << 20, RequestsPerMinute: 120, IPRequestsPerMinute: 600, AuthFailures: 10, AuthWindow: time.Minute, AuthBlock: 15 * time.Minute, ReadTimeout: 5 * time.Minute},
		Channels: []Channel{{Name: "home", Type: "home", Weight: 1}},
		Usage:    UsageConfig{FlushInterval: time.Second, Retention: 400 * 24 * time.Hour},
		Domains:  nil,
	}
}

// LoadRelay reads a relay config file over the defaults and validates it.
func LoadRelay(path string) (Relay, error) {
	return LoadRelayWith(path, os.LookupEnv)
}

// Complete fills defaults inside list items, which DefaultRelay cannot hold.
func (c *Relay) Complete() {
	for i := range c.Channels {
		ch := &c.Channels[i]
		if ch.Weight == 0 {
			ch.Weight = 1
		}
		if ch.Type == "anthropic" && ch.BaseURL == "" {
			ch.BaseURL = "https://api.anthropic.com"
		}
		if ch.Key != "" {
			ch.Keys = append([]string{ch.Key}, ch.Keys...)
			ch.Key = ""
		}
		t := &ch.Timeouts
		if t.Connect == 0 {
			t.Connect = 5 * time.Second
		}
		if t.FirstByte == 0 {
			t.FirstByte = 60 * time.Second
			if ch.Type == "home" {
				// Home's first byte may wait for a cold load from NFS, which the agent allows
				// (ollama.first_byte_timeout): cutting it sooner would cancel the load and make a
				// large model unreachable through the relay.
				t.FirstByte = 10 * time.Minute
			}
		}
		if t.Idle == 0 {
			t.Idle = 60 * time.Second
		}
		if t.Answer == 0 {
			t.Answer = 10 * time.Minute
		}
		if ch.ProbeInterval == 0 {
			ch.ProbeInterval = time.Minute
		}
	}
}

// Validate checks values without side effects and names the key to fix in every message.
func (c *Relay) Validate() error {
	var problems Errors
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if err := checkHostPort(c.Listen.HTTPS); err != nil {
		add("listen.https %q: %v (for example \":443\")", c.Listen.HTTPS, err)
	}
	if c.Listen.HTTP != "" {
		if err := checkHostPort(c.Listen.HTTP); err != nil {
			add("listen.http %q: %v (for example \":80\")", c.Listen.HTTP, err)
		}
	}
	if len(c.Domains) == 0 {
		add("domains is empty: name the domain that points at this VPS, e.g. [ai.example.com]")
	}
	for i, d := range c.Domains {
		if err := checkDomain(d); err != nil {
			add("domains[%d] %q: %v", i, d, err)
		}
	}
	byo := c.TLS.Cert != "" || c.TLS.Key != ""
	if byo && (c.TLS.Cert == "" || c.TLS.Key == "") {
		add("tls.cert and tls.key go together: set both, or neither to use ACME")
	}
	if !byo {
		if c.ACME.Storage == "" {
			add("acme.storage is empty: give a directory for keys and certificates")
		}
		if c.ACME.CA != "" {
			if err := checkHTTPURL(c.ACME.CA); err != nil || !strings.HasPrefix(c.ACME.CA, "https://") {
				add("acme.ca %q: give the ACME directory's https:// URL", c.ACME.CA)
			}
		}
		if len(c.ACME.Challenges) == 0 {
			add("acme.challenges is empty: use http-01, tls-alpn-01 or both")
		}
		for i, ch := range c.ACME.Challenges {
			if ch != "http-01" && ch != "tls-alpn-01" {
				add("acme.challenges[%d] %q: use \"http-01\" or \"tls-alpn-01\"", i, ch)
			}
			if ch == "http-01" && c.Listen.HTTP == "" {
				add("acme.challenges has http-01 but listen.http is off: HTTP-01 needs port 80")
			}
		}
	}
	if err := checkHostPort(c.Tunnel.Bind); err != nil {
		add("tunnel.bind %q: %v (for example \":7000\")", c.Tunnel.Bind, err)
	}
	if !ValidName(c.Tunnel.Home) {
		add("tunnel.home %q: use the agent's tunnel.name (lower-case letters, digits, dashes), e.g. \"home\"", c.Tunnel.Home)
	}
	if len(c.Tunnel.Token) < 16 {
		add("tunnel.token must be at least 16 characters (e.g. `openssl rand -hex 24`); agents present it to connect")
	}
	if c.DB == "" {
		add("db is empty: give the path of the relay's SQLite database")
	}
	if len(c.AdminKey) < 16 {
		add("admin_key must be at least 16 characters (e.g. `openssl rand -hex 24`): it guards /admin/v1")
	}
	c.validateChannels(add)
	l := c.Limits
	if l.MaxBody < 1024 {
		add("limits.max_body %s is too small: use at least \"1MiB\"", l.MaxBody)
	}
	if l.RequestsPerMinute < 1 {
		add("limits.requests_per_minute must be at least 1")
	}
	if l.IPRequestsPerMinute < 1 {
		add("limits.ip_requests_per_minute must be at least 1")
	}
	if l.AuthFailures < 1 || l.AuthWindow <= 0 || l.AuthBlock <= 0 {
		add("limits.auth_failures, auth_window and auth_block must all be greater than 0")
	}
	if l.ReadTimeout < time.Second {
		add("limits.read_timeout %s is too short: a phone on a slow uplink takes seconds to send a large request; give at least 1s, such as 5m (the default)", l.ReadTimeout)
	}
	if len(problems) > 0 {
		return problems
	}
	return nil
}

func checkDomain(d string) error {
	if d == "" || strings.Contains(d, "://") || strings.ContainsAny(d, "/: ") {
		return fmt.Errorf("give a bare host name such as ai.example.com")
	}
	if net.ParseIP(d) != nil {
		return fmt.Errorf("ACME certificates need a DNS name, not an IP address")
	}
	return nil
}

func (c *Relay) validateChannels(add func(string, ...any)) {
	names := map[string]string{} // name -> type
	for i, ch := range c.Channels {
		at := fmt.Sprintf("channels[%d]", i)
		if !ValidName(ch.Name) || names[ch.Name] != "" {
			add("%s.name %q: use a unique name of lower-case letters, digits and dashes", at, ch.Name)
		}
		names[ch.Name] = ch.Type
		switch ch.Type {
		case "home":
			if ch.BaseURL != "" || len(ch.Keys) > 0 {
				add("%s (%s): a home channel goes through the tunnel: remove base_url and key", at, ch.Name)
			}
		case "openai", "anthropic", "ollama":
			if err := checkHTTPURL(ch.BaseURL); err != nil {
				add("%s.base_url %q: %v (for example \"https://api.deepseek.com/v1\")", at, ch.BaseURL, err)
			}
			if len(ch.Keys) == 0 && ch.Type != "ollama" {
				add("%s (%s): key is empty: set key (or keys) to the vendor's API key, e.g. \"${DEEPSEEK_KEY}\"", at, ch.Name)
			}
			if len(ch.Models) == 0 && len(ch.Map) == 0 {
				add("%s (%s): models is empty: list the models it serves (names or globs)", at, ch.Name)
			}
		default:
			add("%s.type %q: use home, openai, anthropic or ollama", at, ch.Type)
		}
		for j, k := range ch.Keys {
			if strings.TrimSpace(k) == "" {
				add("%s (%s): keys[%d] is empty: set its environment variable", at, ch.Name, j)
			}
		}
		if ch.Weight < 1 || ch.Priority < 0 {
			add("%s (%s): weight must be 1 or more and priority 0 or more", at, ch.Name)
		}
		if ch.Timeouts.Connect < 0 || ch.Timeouts.FirstByte < 0 || ch.Timeouts.Idle < 0 || ch.Timeouts.Answer < 0 || ch.ProbeInterval < 0 {
			add("%s (%s): timeouts and probe_interval must be positive", at, ch.Name)
		}
	}
	for i, r := range c.Routes {
		if r.Model == "" || len(r.Fallback) == 0 {
			add("routes[%d]: give model (a glob) and fallback (a list of \"channel/model\")", i)
		}
		for j, f := range r.Fallback {
			ch, model, ok := strings.Cut(f, "/")
			if !ok || model == "" {
				add("routes[%d].fallback[%d] %q: write \"channel/model\", e.g. \"deepseek/deepseek-chat\"", i, j, f)
			} else if names[ch] == "" {
				add("routes[%d].fallback[%d] %q: there is no channel named %q", i, j, f, ch)
			}
		}
	}
	for i, p := range c.Prices {
		if p.Model == "" || p.Prompt < 0 || p.Completion < 0 {
			add("prices[%d]: give model (a glob) and prompt/completion prices of 0 or more per million tokens", i)
		}
	}
	if c.Usage.FlushInterval <= 0 || c.Usage.Retention <= 0 {
		add("usage.flush_interval and usage.retention must be greater than 0")
	}
}
