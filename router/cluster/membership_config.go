package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// Profiles tune gossip timing.
const (
	// ProfileLAN is memberlist's LAN timing: a failed node is declared dead within seconds.
	ProfileLAN = "lan"
	// ProfileLocal is for nodes on one machine (tests): a failure is seen in about 1-2s.
	ProfileLocal = "local"
)

const (
	defaultBind         = "0.0.0.0:7946"
	defaultMetaDebounce = 250 * time.Millisecond
	// clusterLabel keeps hearth's gossip apart from other memberlist users on the same
	// network (Consul and Serf also default to port 7946).
	clusterLabel = "hearth"
)

// Config is the gossip membership's configuration.
type Config struct {
	// Name identifies the node in the cluster; a node restarting with the same name rejoins
	// as itself. Required.
	Name string
	// Bind is the "host:port" gossip listens on, TCP and UDP. The host is an IP ("" = all
	// interfaces); port 0 lets the kernel choose (tests). Default "0.0.0.0:7946".
	Bind string
	// Advertise is the "host:port" other nodes reach this one at; the host is an IP.
	// Default "": the bound address, or a private address when bound to all interfaces.
	Advertise string
	// Join lists peers ("host:port") to join through. Run retries them with exponential
	// backoff (1s to 30s) until one answers. Default none: this node waits to be joined.
	Join []string
	// Secret is the gossip encryption key: 16, 24 or 32 bytes (AES-128, -192, -256). It also
	// authenticates inventory fetches between nodes. Default nil: no encryption; whether that
	// is allowed is the agent's decision.
	Secret []byte
	// Profile is the gossip timing: "lan" or "local" (one machine, for tests). Default "lan".
	Profile string
	// MetaDebounce is how long LocalChanged gathers changes before gossiping them: at most
	// one meta update per MetaDebounce. Default 250ms.
	MetaDebounce time.Duration
}

func (c *Config) setDefaults() {
	if c.Bind == "" {
		c.Bind = defaultBind
	}
	if c.Profile == "" {
		c.Profile = ProfileLAN
	}
	if c.MetaDebounce == 0 {
		c.MetaDebounce = defaultMetaDebounce
	}
}

func (c *Config) validate() error {
	if c.Name == "" {
		return errors.New("cluster: config: name is required")
	}
	if _, _, err := splitIPPort(c.Bind); err != nil {
		return fmt.Errorf("cluster: config: bind %q: %w", c.Bind, err)
	}
	if c.Advertise != "" {
		if _, port, err := splitIPPort(c.Advertise); err != nil {
			return fmt.Errorf("cluster: config: advertise %q: %w", c.Advertise, err)
		} else if port == 0 {
			return fmt.Errorf("cluster: config: advertise %q: port 0 cannot be reached", c.Advertise)
		}
	}
	if c.Secret != nil {
		if err := memberlist.ValidateKey(c.Secret); err != nil {
			return fmt.Errorf("cluster: config: secret is %d bytes, want 16, 24 or 32", len(c.Secret))
		}
	}
	if c.Profile != ProfileLAN && c.Profile != ProfileLocal {
		return fmt.Errorf("cluster: config: profile %q: want %q or %q", c.Profile, ProfileLAN, ProfileLocal)
	}
	if c.MetaDebounce < 0 {
		return fmt.Errorf("cluster: config: meta debounce %s is negative", c.MetaDebounce)
	}
	return nil
}

// splitIPPort parses "ip:port"; an empty host is all interfaces.
func splitIPPort(hostport string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", portStr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("host %q is not an IP address", host)
	}
	return host, int(port), nil
}

// memberlistConfig turns cfg into memberlist's configuration, without delegates.
func memberlistConfig(cfg Config, logger *slog.Logger) *memberlist.Config {
	var c *memberlist.Config
	if cfg.Profile == ProfileLocal {
		c = memberlist.DefaultLocalConfig()
		c.ProbeInterval = 300 * time.Millisecond
		c.ProbeTimeout = 150 * time.Millisecond
		c.GossipInterval = 50 * time.Millisecond
		// DefaultLocalConfig's 2 lets a join or leave miss a node until push/pull; on one
		// machine more retransmissions cost nothing.
		c.RetransmitMult = 4
		c.PushPullInterval = 3 * time.Second
		c.SuspicionMaxTimeoutMult = 4
		c.GossipToTheDeadTime = 3 * time.Second
		c.DeadNodeReclaimTime = time.Second
	} else {
		c = memberlist.DefaultLANConfig()
		// A node that crashed and restarts on another port may take its name back after
		// this long; one that left gracefully may at once.
		c.DeadNodeReclaimTime = 10 * time.Second
	}
	c.Name = cfg.Name
	c.BindAddr, c.BindPort, _ = splitIPPort(cfg.Bind)
	if cfg.Advertise != "" {
		c.AdvertiseAddr, c.AdvertisePort, _ = splitIPPort(cfg.Advertise)
	} else {
		c.AdvertisePort = c.BindPort
	}
	c.Label = clusterLabel
	c.SecretKey = bytes.Clone(cfg.Secret)
	c.GossipVerifyIncoming = true
	c.GossipVerifyOutgoing = true
	c.Logger = memberlistLogger(logger)
	return c
}
