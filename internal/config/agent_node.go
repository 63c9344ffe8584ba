package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Storage is the model store: Ollama's OLLAMA_MODELS, usually shared over NFS by every GPU
// machine and kept on the NAS.
type Storage struct {
	// ModelsDir is the store's absolute path ("/mnt/nas/ollama-models"). A managed Ollama gets
	// it as OLLAMA_MODELS, and the agent advertises the models its manifests list even while
	// Ollama is stopped. Default "" = none: models are what Ollama reports.
	ModelsDir string `yaml:"models_dir"`
	// RequireMount makes the agent wait until ModelsDir is on a mounted filesystem of FSTypes
	// before it starts a managed Ollama or advertises the store's models. Default false.
	RequireMount bool `yaml:"require_mount"`
	// MountTimeout bounds that wait; past it the agent stops with an error saying what is
	// missing. Default 10m.
	MountTimeout time.Duration `yaml:"mount_timeout"`
	// FSTypes are the filesystem types that count as mounted. Default [nfs, nfs4, cifs, smb3].
	FSTypes []string `yaml:"fs_types"`
	// PruneOwner lets this node's managed Ollama prune unused blobs; every other node gets
	// OLLAMA_NOPRUNE=1, so one node's start-up cannot delete another's download in progress.
	// Exactly one node of a cluster should have it. Default false.
	PruneOwner bool `yaml:"prune_owner"`
	// HealthInterval is how often the store is checked. Default 10s.
	HealthInterval time.Duration `yaml:"health_interval"`
	// HealthTimeout bounds one check (a stat of ModelsDir); past it the store is unhealthy and
	// this node gets no cold loads until it answers again. Default 5s.
	HealthTimeout time.Duration `yaml:"health_timeout"`
}

// WakeRule wakes a sleeping node by Wake-on-LAN when a request wants a model only it holds.
type WakeRule struct {
	// Node is the node's node.name.
	Node string `yaml:"node"`
	// MAC is its network card's address, "aa:bb:cc:dd:ee:ff".
	MAC string `yaml:"mac"`
	// Broadcast is where the magic packet goes: the LAN's broadcast address and port.
	// Default "255.255.255.255:9".
	Broadcast string `yaml:"broadcast"`
	// Wait is how long a request waits for the node to join and load its model (policy hold),
	// and the Retry-After of a 503 (policy fallback). Default 90s.
	Wait time.Duration `yaml:"wait"`
	// Policy is "hold" (the request waits up to Wait) or "fallback" (503 model_unavailable at
	// once, so the relay serves it from a vendor while the node wakes). Default "hold".
	Policy string `yaml:"policy"`
}

// Idle is what this node does about sleep.
type Idle struct {
	// Inhibit holds a logind sleep inhibitor (systemd-inhibit) while requests are in flight
	// on this node's Ollama, so the machine does not fall asleep mid-answer. Default true.
	Inhibit bool `yaml:"inhibit"`
	// After is how long without requests before Command runs. Default 0 = never.
	After time.Duration `yaml:"after"`
	// Command runs (by /bin/sh -c) after After without requests, e.g. "systemctl suspend".
	// Default "".
	Command string `yaml:"command"`
}

// Variables a managed Ollama gets from other keys; ollama.env may not set them.
var managedEnv = []string{"OLLAMA_HOST", "OLLAMA_MODELS", "OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_KEEP_ALIVE", "OLLAMA_NOPRUNE"}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Wake rule defaults.
const (
	DefaultWakeBroadcast = "255.255.255.255:9"
	DefaultWakeWait      = 90 * time.Second
)

func defaultStorage() Storage {
	return Storage{MountTimeout: 10 * time.Minute, FSTypes: []string{"nfs", "nfs4", "cifs", "smb3"},
		HealthInterval: 10 * time.Second, HealthTimeout: 5 * time.Second}
}

// completeNode fills the defaults of wake rules.
func (c *Agent) completeNode() {
	for i := range c.Wake {
		w := &c.Wake[i]
		if w.Broadcast == "" {
			w.Broadcast = DefaultWakeBroadcast
		}
		if w.Wait == 0 {
			w.Wait = DefaultWakeWait
		}
		if w.Policy == "" {
			w.Policy = "hold"
		}
	}
}

func (c *Agent) validateNode(add func(string, ...any)) {
	s := c.Storage
	if s.ModelsDir != "" && !filepath.IsAbs(s.ModelsDir) {
		add("storage.models_dir %q must be an absolute path, e.g. \"/mnt/nas/ollama-models\"", s.ModelsDir)
	}
	if s.ModelsDir == "" && (s.RequireMount || s.PruneOwner) {
		add("storage.require_mount and storage.prune_owner need storage.models_dir: set it to the store's path")
	}
	if len(s.FSTypes) == 0 {
		add("storage.fs_types is empty: list the filesystem types that count as mounted, e.g. [nfs, nfs4]")
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"storage.mount_timeout", s.MountTimeout}, {"storage.health_interval", s.HealthInterval}, {"storage.health_timeout", s.HealthTimeout}} {
		if d.d <= 0 {
			add("%s must be greater than 0 (got %s)", d.key, d.d)
		}
	}
	o := c.Ollama
	if o.Manage {
		if o.URL == "" {
			add("ollama.manage needs ollama.url: the address the managed Ollama listens on (OLLAMA_HOST)")
		} else if strings.HasPrefix(o.URL, "https://") {
			add("ollama.manage: Ollama serves plain HTTP; give ollama.url as http://HOST:PORT")
		}
		if strings.TrimSpace(o.Binary) == "" {
			add("ollama.binary is empty: give the ollama program's path or name, e.g. \"/usr/local/bin/ollama\"")
		}
	}
	for _, k := range sortedEnv(o.Env) {
		switch {
		case !envName.MatchString(k):
			add("ollama.env %q is not a variable name: use letters, digits and _, not starting with a digit (e.g. OLLAMA_FLASH_ATTENTION)", k)
		case slices.Contains(managedEnv, k):
			add("ollama.env.%s is set by hearth from its own keys (ollama.url, storage.models_dir, ollama.parallel, ollama.max_loaded, ollama.keep_alive, storage.prune_owner): remove it", k)
		}
	}
	if o.KeepAlive != "" && !validKeepAlive(o.KeepAlive) {
		add("ollama.keep_alive %q: give a duration such as \"30m\", seconds, or \"-1\" to keep models loaded", o.KeepAlive)
	}
	c.validateWake(add)
	if c.Idle.After < 0 {
		add("idle.after must be 0 (never) or more (got %s)", c.Idle.After)
	}
	if (c.Idle.After > 0) != (strings.TrimSpace(c.Idle.Command) != "") {
		add("idle.after and idle.command go together: set both (e.g. after: 30m, command: \"systemctl suspend\") or neither")
	}
}

func (c *Agent) validateWake(add func(string, ...any)) {
	seen := map[string]bool{}
	for i, w := range c.Wake {
		if strings.TrimSpace(w.Node) == "" || seen[w.Node] {
			add("wake[%d].node %q: name the sleeping node (its node.name), once", i, w.Node)
		}
		seen[w.Node] = true
		if w.Node != "" && w.Node == c.Node.Name {
			add("wake[%d].node %q is this node itself: put the rule in the agent.yaml of a machine that stays awake (the NAS), naming the one that sleeps", i, w.Node)
		}
		if hw, err := net.ParseMAC(w.MAC); err != nil || len(hw) != 6 {
			add("wake[%d].mac %q is not a MAC address such as \"aa:bb:cc:dd:ee:ff\"", i, w.MAC)
		}
		if err := checkHostPort(w.Broadcast); err != nil {
			add("wake[%d].broadcast %q: %v (for example \"192.168.1.255:9\")", i, w.Broadcast, err)
		} else if host, _, _ := net.SplitHostPort(w.Broadcast); net.ParseIP(host).To4() == nil {
			add("wake[%d].broadcast %q: give the LAN's IPv4 broadcast address, e.g. \"192.168.1.255:9\"", i, w.Broadcast)
		}
		if w.Wait <= 0 {
			add("wake[%d].wait must be greater than 0 (got %s)", i, w.Wait)
		}
		if w.Policy != "hold" && w.Policy != "fallback" {
			add("wake[%d].policy %q: use \"hold\" (wait for the node) or \"fallback\" (503 at once)", i, w.Policy)
		}
	}
}

func validKeepAlive(s string) bool {
	if _, err := strconv.Atoi(s); err == nil {
		return true
	}
	_, err := time.ParseDuration(s)
	return err == nil
}

func sortedEnv(env map[string]string) []string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// OllamaHost is OLLAMA_HOST for a managed Ollama: ollama.url's host:port.
func (o Ollama) OllamaHost() (string, error) {
	u, err := parseURL(o.URL)
	if err != nil {
		return "", fmt.Errorf("ollama.url %q: %w", o.URL, err)
	}
	port := u.Port()
	if port == "" {
		port = "11434"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

func parseURL(s string) (*url.URL, error) {
	if err := checkHTTPURL(s); err != nil {
		return nil, err
	}
	return url.Parse(s)
}
