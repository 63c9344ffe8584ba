package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"gopkg.in/yaml.v3"
)

// DefaultAgentPath is where `hearth agent` looks for its config when --config is not given.
const DefaultAgentPath = "/etc/hearth/agent.yaml"

// Agent is the configuration of `hearth agent` (agent.yaml).
type Agent struct {
	Node    Node    `yaml:"node"`
	Ollama  Ollama  `yaml:"ollama"`
	Cluster Cluster `yaml:"cluster"`
	Router  Router  `yaml:"router"`
	Tunnel  Tunnel  `yaml:"tunnel"`
	Rag     Rag     `yaml:"rag"`

	// Storage, Wake and Idle: the node's model store, waking sleeping nodes, and sleep.
	Storage Storage    `yaml:"storage"`
	Wake    []WakeRule `yaml:"wake"`
	Idle    Idle       `yaml:"idle"`
}

// Tunnel connects this agent to the relay on the VPS (an frp client), so that phones reach
// home without open ports. One agent per home usually holds it (the always-on NAS).
type Tunnel struct {
	// Relay is the relay's tunnel address, "relay.example.com:7000". Default "" = no tunnel.
	Relay string `yaml:"relay"`
	// Token is the relay's tunnel.token. Required with Relay.
	Token string `yaml:"token"`
	// Name is the channel the relay reaches this agent's API as. Default "home".
	Name string `yaml:"name"`
	// CA is a PEM file of roots that sign the relay's certificate (a private CA). Default:
	// the system's roots, which trust an ACME certificate.
	CA string `yaml:"ca"`
	// ServerName is the name to verify in the relay's certificate when Relay is an IP
	// address. Default: Relay's host.
	ServerName string `yaml:"server_name"`
	// Expose publishes home web apps through the relay, each on its own host name.
	Expose []Expose `yaml:"expose"`
}

// Expose is one home web app published through the relay.
type Expose struct {
	// Name identifies the app (letters, digits, dashes).
	Name string `yaml:"name"`
	// Local is the app's host:port as this agent reaches it, "127.0.0.1:3000".
	Local string `yaml:"local"`
	// Host is the public name the relay serves it at, with its own certificate.
	Host string `yaml:"host"`
	// Auth is "token" (a hearth token is required: a login page for browsers, Bearer for
	// APIs) or "none" (the app does its own). Default "token".
	Auth string `yaml:"auth"`
}

// Cluster is gossip membership with the other home agents.
type Cluster struct {
	// Bind is the host:port for gossip (TCP and UDP). Default "" = no cluster: this agent
	// serves its own Ollama alone. The usual value is "0.0.0.0:7946".
	Bind string `yaml:"bind"`
	// Advertise is the host:port other agents reach this one's gossip at, when Bind is not
	// reachable as is (0.0.0.0, NAT). Default: the address memberlist detects.
	Advertise string `yaml:"advertise"`
	// Join lists peers ("nas.lan:7946"); tried with backoff until one answers. Default none.
	Join []string `yaml:"join"`
	// Secret is the gossip encryption key: base64 of 16, 24 or 32 random bytes
	// (`openssl rand -base64 32`). Required when the cluster is on, unless Insecure.
	Secret string `yaml:"secret"`
	// Insecure allows a cluster without a secret: gossip in clear text, and agents accept
	// each other's forwarded requests only from node.trusted_networks. Default false.
	Insecure bool `yaml:"insecure"`
	// API is the URL other agents use for this agent's API. Default: http:// plus the
	// gossip address's host and node.listen's port.
	API string `yaml:"api"`
	// Timings is "lan" (memberlist's LAN defaults, failure found in a few seconds) or "fast"
	// (for tests and small quiet networks). Default "lan".
	Timings string `yaml:"timings"`
}

// Router is how requests wait when every node that has the model is busy.
type Router struct {
	// MaxQueue bounds the requests waiting for a free slot; beyond it, 503. Default 512, as
	// Ollama's own OLLAMA_MAX_QUEUE.
	MaxQueue int `yaml:"max_queue"`
	// QueueTimeout bounds one request's wait for a slot; then 503 with Retry-After. Default 2m.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
}

// Node is this agent's own identity and API listener.
type Node struct {
	// Name identifies the node in X-Hearth-Node and the cluster. Default: the host name.
	Name string `yaml:"name"`
	// Listen is the host:port of the Ollama/OpenAI-compatible API. Default "127.0.0.1:11500";
	// use "0.0.0.0:11500" to serve the LAN.
	Listen string `yaml:"listen"`
	// APIKeys are accepted as "Authorization: Bearer KEY" from any address. Default none.
	APIKeys []string `yaml:"api_keys"`
	// TrustedNetworks are CIDRs whose clients need no key (the `ollama` CLI cannot send one).
	// Default loopback only: ["127.0.0.0/8", "::1/128"].
	TrustedNetworks []string `yaml:"trusted_networks"`
	// CORSOrigins are browser origins, beyond Ollama's defaults (http(s)://localhost,
	// 127.0.0.1 and 0.0.0.0 on any port; app://, file://, tauri://, vscode-webview://,
	// vscode-file://), whose pages may call the API, as OLLAMA_ORIGINS adds to Ollama's:
	// e.g. "chrome-extension://*" for a browser extension, "http://nas.lan:3000" for a chat
	// page served from the NAS. One * each. A page still needs a key or a trusted network.
	CORSOrigins []string `yaml:"cors_origins"`
	// MaxBody is the largest JSON request body accepted (images travel base64 inside it).
	// Uploads to /api/blobs are streamed and not bound by it. Default "64MiB".
	MaxBody ByteSize `yaml:"max_body"`
	// DataDir holds the agent's state. Default $XDG_DATA_HOME/hearth or ~/.local/share/hearth.
	DataDir string `yaml:"data_dir"`
}

// Ollama is the local model server this agent fronts.
type Ollama struct {
	// URL of the local Ollama. Default "http://127.0.0.1:11434". Set "" on a machine with no
	// Ollama (a NAS): it joins the cluster and routes, and serves no models.
	URL string `yaml:"url"`
	// Parallel is how many requests this Ollama runs at once: its OLLAMA_NUM_PARALLEL. The
	// router fills this many slots before it sends elsewhere or queues. Default 1.
	Parallel int `yaml:"parallel"`
	// MaxLoaded is how many models this Ollama keeps loaded at once: its
	// OLLAMA_MAX_LOADED_MODELS, or how many fit in the GPU's memory. The router plans a load
	// on this node as evicting nothing only while fewer are loaded. Default 0: learn it from
	// /api/ps (one until more are seen at once).
	MaxLoaded int `yaml:"max_loaded"`
	// ConnectTimeout bounds dialing Ollama; past it the request fails over or gets 503. Default 3s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// FirstByteTimeout bounds the wait for Ollama's first response byte: loading a cold model
	// from disk or NFS for a stream, the whole answer for a non-stream. Default 10m.
	FirstByteTimeout time.Duration `yaml:"first_byte_timeout"`
	// PollInterval is how often the agent re-reads Ollama's models and health. Default 5s.
	PollInterval time.Duration `yaml:"poll_interval"`

	// Manage makes the agent run `ollama serve` itself, once the store is mounted, with
	// OLLAMA_HOST, OLLAMA_MODELS, OLLAMA_NUM_PARALLEL, OLLAMA_MAX_LOADED_MODELS and
	// OLLAMA_KEEP_ALIVE from this config; it restarts it with backoff when it dies and
	// stops it (SIGTERM, then SIGKILL after 10s) when the agent stops. Default false.
	Manage bool `yaml:"manage"`
	// Binary is the ollama program a managed Ollama runs. Default "ollama" (found in PATH).
	Binary string `yaml:"binary"`
	// Env adds environment variables to a managed Ollama ({OLLAMA_FLASH_ATTENTION: "1"}).
	// Default none.
	Env map[string]string `yaml:"env"`
	// KeepAlive is a managed Ollama's OLLAMA_KEEP_ALIVE: how long a model stays loaded after
	// its last request ("30m", seconds, "-1" = for ever). Default "" = Ollama's own (5m).
	KeepAlive string `yaml:"keep_alive"`
}

// ByteSize is a size in bytes written as "64MiB", "1GB" or a plain number.
type ByteSize int64

// UnmarshalYAML accepts human sizes.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := humanize.ParseBytes(n.Value)
	if err != nil || v > 1<<62 {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal !!%s `%s` into config.ByteSize", n.Line, strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)}}
	}
	*b = ByteSize(v)
	return nil
}

func (b ByteSize) String() string { return humanize.IBytes(uint64(b)) }

// DefaultAgent is the one place the agent's defaults live; it runs on one machine as is.
func DefaultAgent() Agent {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "hearth"
	}
	return Agent{
		Node: Node{
			Name:            host,
			Listen:          "127.0.0.1:11500",
			TrustedNetworks: []string{"127.0.0.0/8", "::1/128"},
			MaxBody:         64 << 20,
			DataDir:         defaultDataDir(),
		},
		Ollama: Ollama{
			URL:              "http://127.0.0.1:11434",
			ConnectTimeout:   3 * time.Second,
			FirstByteTimeout: 10 * time.Minute,
			Parallel:         1,
			PollInterval:     5 * time.Second,
			Binary:           "ollama",
		},
		Cluster: Cluster{Timings: "lan"},
		Router:  Router{MaxQueue: 512, QueueTimeout: 2 * time.Minute},
		Tunnel:  Tunnel{Name: "home"},
		Rag:     defaultRag(),
		Storage: defaultStorage(), Idle: Idle{Inhibit: true},
	}
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "hearth")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "hearth")
	}
	return filepath.Join(os.TempDir(), "hearth")
}

// LoadAgent reads an agent config file over the defaults and validates it.
func LoadAgent(path string) (Agent, error) {
	return LoadAgentWith(path, os.LookupEnv)
}

// Complete fills defaults inside list items, which DefaultAgent cannot hold.
func (c *Agent) Complete() {
	for i := range c.Tunnel.Expose {
		if c.Tunnel.Expose[i].Auth == "" {
			c.Tunnel.Expose[i].Auth = "token"
		}
	}
	c.completeNode()
}

// Validate checks values without side effects and names the key to fix in every message.
func (c *Agent) Validate() error {
	var problems Errors
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if strings.TrimSpace(c.Node.Name) == "" {
		add("node.name is empty: give this machine a name such as \"gpu-pc\"")
	}
	if err := checkHostPort(c.Node.Listen); err != nil {
		add("node.listen %q: %v (for example \"0.0.0.0:11500\")", c.Node.Listen, err)
	}
	for i, k := range c.Node.APIKeys {
		if strings.TrimSpace(k) == "" {
			add("node.api_keys[%d] is empty: remove it or set its environment variable", i)
		} else if len(k) < 16 {
			add("node.api_keys[%d] is %d characters long: use at least 16 (e.g. from `openssl rand -hex 16`)", i, len(k))
		}
	}
	if _, err := c.Node.TrustedPrefixes(); err != nil {
		add("%v", err)
	}
	for i, o := range c.Node.CORSOrigins {
		if o == "*" || !strings.Contains(o, "://") || strings.Count(o, "*") > 1 || strings.HasSuffix(o, "/") {
			add("node.cors_origins[%d] %q: give an origin such as \"http://nas.lan:3000\" or \"chrome-extension://*\" (scheme://host[:port], at most one *, no path; \"*\" alone would let any web page read the answers)", i, o)
		}
	}
	if c.Node.MaxBody < 1024 {
		add("node.max_body %s is too small: requests carry whole conversations; use at least \"1MiB\"", c.Node.MaxBody)
	}
	if c.Node.DataDir == "" {
		add("node.data_dir is empty: give a directory for the agent's state")
	}
	if c.Ollama.URL == "" && c.Cluster.Bind == "" {
		add("ollama.url is empty and the cluster is off: set ollama.url, or cluster.bind and cluster.join to route for other nodes")
	} else if c.Ollama.URL != "" {
		if err := checkHTTPURL(c.Ollama.URL); err != nil {
			add("ollama.url %q: %v (for example \"http://127.0.0.1:11434\")", c.Ollama.URL, err)
		}
	}
	if c.Ollama.Parallel < 1 || c.Ollama.Parallel > 1024 {
		add("ollama.parallel %d: give Ollama's OLLAMA_NUM_PARALLEL, between 1 and 1024", c.Ollama.Parallel)
	}
	if c.Ollama.MaxLoaded < 0 || c.Ollama.MaxLoaded > 255 {
		add("ollama.max_loaded %d: give how many models Ollama keeps loaded at once (OLLAMA_MAX_LOADED_MODELS), between 1 and 255, or 0 to learn it", c.Ollama.MaxLoaded)
	}
	c.validateCluster(add)
	c.validateTunnel(add)
	c.validateRag(add)
	c.validateNode(add)
	if c.Router.MaxQueue < 0 {
		add("router.max_queue %d must be 0 or more", c.Router.MaxQueue)
	}
	if c.Router.QueueTimeout <= 0 {
		add("router.queue_timeout must be greater than 0 (got %s)", c.Router.QueueTimeout)
	}
	positive := map[string]time.Duration{
		"ollama.connect_timeout":    c.Ollama.ConnectTimeout,
		"ollama.first_byte_timeout": c.Ollama.FirstByteTimeout,
		"ollama.poll_interval":      c.Ollama.PollInterval,
	}
	for _, key := range []string{"ollama.connect_timeout", "ollama.first_byte_timeout", "ollama.poll_interval"} {
		if positive[key] <= 0 {
			add("%s must be greater than 0 (got %s)", key, positive[key])
		}
	}
	if len(problems) > 0 {
		return problems
	}
	return nil
}

// TrustedPrefixes parses node.trusted_networks; a bare address means just that host.
func (n *Node) TrustedPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(n.TrustedNetworks))
	for i, s := range n.TrustedNetworks {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		return nil, fmt.Errorf("node.trusted_networks[%d] %q is not a CIDR such as \"192.168.1.0/24\"", i, s)
	}
	return out, nil
}

func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("not host:port")
	}
	if port == "" {
		return fmt.Errorf("the port is missing")
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

func checkHTTPURL(s string) error {
	if s == "" {
		return fmt.Errorf("it is empty")
	}
	if !strings.Contains(s, "://") {
		return fmt.Errorf("the scheme is missing")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("the scheme must be http or https")
	}
	if u.Host == "" {
		return fmt.Errorf("the host is missing")
	}
	return nil
}

func (c *Agent) validateCluster(add func(string, ...any)) {
	cl := c.Cluster
	if cl.Bind == "" {
		if len(cl.Join) > 0 {
			add("cluster.join is set but cluster.bind is empty: set cluster.bind (e.g. \"0.0.0.0:7946\") to join a cluster")
		}
		return
	}
	if err := checkHostPort(cl.Bind); err != nil {
		add("cluster.bind %q: %v (for example \"0.0.0.0:7946\")", cl.Bind, err)
	}
	if cl.Advertise != "" {
		if err := checkHostPort(cl.Advertise); err != nil {
			add("cluster.advertise %q: %v (for example \"192.168.1.10:7946\")", cl.Advertise, err)
		}
	}
	for i, j := range cl.Join {
		if err := checkHostPort(j); err != nil {
			add("cluster.join[%d] %q: %v (for example \"nas.lan:7946\")", i, j, err)
		}
	}
	if cl.API != "" {
		if err := checkHTTPURL(cl.API); err != nil {
			add("cluster.api %q: %v (for example \"http://192.168.1.10:11500\")", cl.API, err)
		}
	}
	if cl.Timings != "lan" && cl.Timings != "fast" {
		add("cluster.timings %q: use \"lan\" or \"fast\"", cl.Timings)
	}
	if cl.Secret == "" {
		if !cl.Insecure {
			add("cluster.secret is empty: gossip must be encrypted; set it to the output of `openssl rand -base64 32` on every node, or set cluster.insecure: true")
		}
		return
	}
	if _, err := cl.Key(); err != nil {
		add("%v", err)
	}
}

// Key decodes cluster.secret.
func (cl Cluster) Key() ([]byte, error) {
	if cl.Secret == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(cl.Secret)
	if err != nil {
		return nil, fmt.Errorf("cluster.secret is not base64: use the output of `openssl rand -base64 32`")
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("cluster.secret decodes to %d bytes: it must be 16, 24 or 32 (`openssl rand -base64 32`)", n)
	}
	return key, nil
}

func (c *Agent) validateTunnel(add func(string, ...any)) {
	t := c.Tunnel
	if t.Relay == "" {
		if len(t.Expose) > 0 {
			add("tunnel.expose is set but tunnel.relay is empty: name the relay, e.g. \"relay.example.com:7000\"")
		}
		return
	}
	if err := checkHostPort(t.Relay); err != nil {
		add("tunnel.relay %q: %v (for example \"relay.example.com:7000\")", t.Relay, err)
	}
	if len(t.Token) < 16 {
		add("tunnel.token must be the relay's tunnel.token (at least 16 characters)")
	}
	if !ValidName(t.Name) {
		add("tunnel.name %q: use lower-case letters, digits and dashes, e.g. \"home\"", t.Name)
	}
	if host, _, err := net.SplitHostPort(t.Relay); err == nil && net.ParseIP(host) != nil && t.ServerName == "" {
		add("tunnel.relay is an IP address: set tunnel.server_name to the name in the relay's certificate")
	}
	seen := map[string]bool{}
	for i, e := range t.Expose {
		if !ValidName(e.Name) || seen[e.Name] {
			add("tunnel.expose[%d].name %q: use a unique name of lower-case letters, digits and dashes", i, e.Name)
		}
		seen[e.Name] = true
		if err := checkHostPort(e.Local); err != nil {
			add("tunnel.expose[%d].local %q: %v (for example \"127.0.0.1:3000\")", i, e.Local, err)
		}
		if err := checkDomain(e.Host); err != nil {
			add("tunnel.expose[%d].host %q: %v", i, e.Host, err)
		}
		if e.Auth != "token" && e.Auth != "none" {
			add("tunnel.expose[%d].auth %q: use \"token\" or \"none\"", i, e.Auth)
		}
	}
}

// ValidName reports whether s can name a tunnel channel or an exposed app: lower-case
// letters, digits and dashes, as in a DNS label.
func ValidName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
