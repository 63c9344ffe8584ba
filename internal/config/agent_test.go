package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAgentGoodFiles(t *testing.T) {
	t.Setenv("TEST_PORT", "11600")
	t.Setenv("TEST_LAN_KEY", "0123456789abcdef0123")
	t.Setenv("TEST_OLLAMA_HOST", "gpu.lan")
	t.Setenv("TEST_CLUSTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	def := DefaultAgent()
	tests := []struct {
		file  string
		check func(t *testing.T, c Agent)
	}{
		{"testdata/minimal.good.yaml", func(t *testing.T, c Agent) {
			if c.Node.Name != "nas" || c.Node.Listen != def.Node.Listen || c.Ollama.URL != def.Ollama.URL {
				t.Errorf("got %+v", c)
			}
		}},
		{"testdata/empty.good.yaml", func(t *testing.T, c Agent) {
			if c.Node.Name != def.Node.Name || c.Node.MaxBody != 64<<20 || len(c.Node.TrustedNetworks) != 2 {
				t.Errorf("defaults not kept: %+v", c)
			}
		}},
		{"testdata/env.good.yaml", func(t *testing.T, c Agent) {
			if c.Node.Listen != "0.0.0.0:11600" || c.Node.APIKeys[0] != "0123456789abcdef0123" ||
				c.Ollama.URL != "http://gpu.lan:11434" || c.Ollama.PollInterval != 2*time.Second {
				t.Errorf("got %+v", c)
			}
		}},
		{"testdata/router-only.good.yaml", func(t *testing.T, c Agent) {
			key, err := c.Cluster.Key()
			if c.Ollama.URL != "" || len(c.Cluster.Join) != 2 || len(key) != 32 || err != nil ||
				c.Router.MaxQueue != 32 || c.Router.QueueTimeout != 45*time.Second || c.Cluster.Timings != "lan" {
				t.Errorf("got %+v (key %d bytes, %v)", c, len(key), err)
			}
		}},
		{"testdata/tunnel.good.yaml", func(t *testing.T, c Agent) {
			if c.Tunnel.Name != "home" || len(c.Tunnel.Expose) != 1 || c.Tunnel.Expose[0].Auth != "token" {
				t.Errorf("got %+v", c.Tunnel)
			}
		}},
		{"testdata/node.good.yaml", func(t *testing.T, c Agent) {
			s, w := c.Storage, c.Wake
			if s.ModelsDir != "/mnt/nas/ollama-models" || !s.RequireMount || s.MountTimeout != 2*time.Minute || !s.PruneOwner ||
				len(s.FSTypes) != 4 || s.HealthInterval != 10*time.Second || s.HealthTimeout != 5*time.Second {
				t.Errorf("storage %+v", s)
			}
			if !c.Ollama.Manage || c.Ollama.Binary != "/usr/local/bin/ollama" || c.Ollama.KeepAlive != "30m" || c.Ollama.Env["OLLAMA_FLASH_ATTENTION"] != "1" {
				t.Errorf("ollama %+v", c.Ollama)
			}
			if len(w) != 2 || w[0].Broadcast != DefaultWakeBroadcast || w[0].Wait != DefaultWakeWait || w[0].Policy != "hold" ||
				w[1].Broadcast != "192.168.1.255:7" || w[1].Wait != 2*time.Minute || w[1].Policy != "fallback" {
				t.Errorf("wake %+v", w)
			}
			if !c.Idle.Inhibit || c.Idle.After != 45*time.Minute || c.Idle.Command != "systemctl suspend" {
				t.Errorf("idle %+v", c.Idle)
			}
		}},
		{"../../configs/home-cluster/nas.yaml", func(t *testing.T, c Agent) {
			if c.Node.Name != "nas" || c.Ollama.URL != "" || c.Storage.ModelsDir != "/srv/ollama-models" || c.Storage.RequireMount ||
				len(c.Wake) != 1 || c.Wake[0].Policy != "fallback" || c.Wake[0].Wait != 90*time.Second || c.Tunnel.Relay == "" {
				t.Errorf("got %+v", c)
			}
		}},
		{"../../configs/home-cluster/gpu-pc.yaml", func(t *testing.T, c Agent) {
			if !c.Ollama.Manage || c.Ollama.Parallel != 4 || !c.Storage.RequireMount || !c.Storage.PruneOwner ||
				len(c.Storage.FSTypes) != 2 || c.Idle.After != time.Hour || c.Idle.Command != "systemctl suspend" || c.Ollama.KeepAlive != "30m" {
				t.Errorf("got %+v", c)
			}
		}},
		{"../../configs/home-cluster/gpu-box.yaml", func(t *testing.T, c Agent) {
			if !c.Ollama.Manage || c.Ollama.Binary != "ollama" || c.Storage.PruneOwner || !c.Storage.RequireMount || len(c.Storage.FSTypes) != 4 {
				t.Errorf("got %+v", c)
			}
		}},
		{"../../configs/agent.yaml", func(t *testing.T, c Agent) {
			if c.Node.Name != "gpu-pc" || c.Node.Listen != "0.0.0.0:11500" || len(c.Node.TrustedNetworks) != 3 ||
				c.Ollama.FirstByteTimeout != 10*time.Minute || c.Node.DataDir != "/var/lib/hearth" ||
				c.Ollama.Parallel != 2 || c.Cluster.Bind != "0.0.0.0:7946" || c.Router.QueueTimeout != 2*time.Minute ||
				c.Tunnel.Relay != "relay.example.com:7000" || len(c.Tunnel.Expose) != 1 || c.Tunnel.Expose[0].Auth != "token" {
				t.Errorf("got %+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			t.Setenv("HEARTH_LAN_KEY", "example-lan-key-0123456789")
			t.Setenv("HEARTH_CLUSTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
			t.Setenv("HEARTH_TUNNEL_TOKEN", "tunnel-0123456789abcdef")
			c, err := LoadAgent(tt.file)
			if err != nil {
				t.Fatalf("LoadAgent: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestAgentBadFiles(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"unknown-key", `testdata/unknown-key.bad.yaml:3: unknown key "lisen" in node (known keys: api_keys, cors_origins, data_dir, listen, max_body, name, trusted_networks)`},
		{"unknown-section", `testdata/unknown-section.bad.yaml:3: unknown key "olama" (known keys: cluster, idle, node, ollama, rag, router, storage, tunnel, wake)`},
		{"cluster-nosecret", "testdata/cluster-nosecret.bad.yaml: cluster.secret is empty: gossip must be encrypted; set it to the output of `openssl rand -base64 32` on every node, or set cluster.insecure: true"},
		{"cluster-secret", "testdata/cluster-secret.bad.yaml: cluster.secret decodes to 5 bytes: it must be 16, 24 or 32 (`openssl rand -base64 32`)"},
		{"cluster-join-nobind", `testdata/cluster-join-nobind.bad.yaml: cluster.join is set but cluster.bind is empty: set cluster.bind (e.g. "0.0.0.0:7946") to join a cluster`},
		{"tunnel-ip", `testdata/tunnel-ip.bad.yaml: 3 problems:
  tunnel.relay is an IP address: set tunnel.server_name to the name in the relay's certificate
  tunnel.expose[0].name "WebUI": use a unique name of lower-case letters, digits and dashes
  tunnel.expose[0].auth "maybe": use "token" or "none"`},
		{"router-only-standalone", "testdata/router-only-standalone.bad.yaml: ollama.url is empty and the cluster is off: set ollama.url, or cluster.bind and cluster.join to route for other nodes"},
		{"syntax", `testdata/syntax.bad.yaml: 3: mapping values are not allowed in this context`},
		{"duration", `testdata/duration.bad.yaml:2: "soon" is not a duration such as "30s", "5m" or "1h"`},
		{"size", `testdata/size.bad.yaml:2: "lots" is not a size such as "32MiB" or "1GB"`},
		{"env-missing", `testdata/env-missing.bad.yaml:2: environment variable TEST_UNSET_KEY is not set (export it, or write the value here)`},
		{"listen", `testdata/listen.bad.yaml: node.listen "11500": not host:port (for example "0.0.0.0:11500")`},
		{"url", `testdata/url.bad.yaml: ollama.url "127.0.0.1:11434": the scheme is missing (for example "http://127.0.0.1:11434")`},
		{"cidr", `testdata/cidr.bad.yaml: node.trusted_networks[0] "192.168.1.0/33" is not a CIDR such as "192.168.1.0/24"`},
		{"cors", `testdata/cors.bad.yaml: node.cors_origins[0] "*": give an origin such as "http://nas.lan:3000" or "chrome-extension://*" (scheme://host[:port], at most one *, no path; "*" alone would let any web page read the answers)`},
		{"short-key", "testdata/short-key.bad.yaml: node.api_keys[0] is 6 characters long: use at least 16 (e.g. from `openssl rand -hex 16`)"},
		{"list", `testdata/list.bad.yaml:2: "10.0.0.0/8" is not a list`},
		{"max-loaded", "testdata/max-loaded.bad.yaml: ollama.max_loaded -1: give how many models Ollama keeps loaded at once (OLLAMA_MAX_LOADED_MODELS), between 1 and 255, or 0 to learn it"},
		{"storage", `testdata/storage.bad.yaml: 3 problems:
  storage.models_dir "ollama-models" must be an absolute path, e.g. "/mnt/nas/ollama-models"
  storage.fs_types is empty: list the filesystem types that count as mounted, e.g. [nfs, nfs4]
  storage.health_timeout must be greater than 0 (got 0s)`},
		{"storage-nodir", "testdata/storage-nodir.bad.yaml: storage.require_mount and storage.prune_owner need storage.models_dir: set it to the store's path"},
		{"wake", `testdata/wake.bad.yaml: 6 problems:
  wake[0].mac "aa:bb:cc:dd:ee" is not a MAC address such as "aa:bb:cc:dd:ee:ff"
  wake[0].broadcast "[::1]:9": give the LAN's IPv4 broadcast address, e.g. "192.168.1.255:9"
  wake[0].policy "wait": use "hold" (wait for the node) or "fallback" (503 at once)
  wake[1].node "gpu-pc": name the sleeping node (its node.name), once
  wake[1].broadcast "192.168.1.255": not host:port (for example "192.168.1.255:9")
  wake[2].node "nas" is this node itself: put the rule in the agent.yaml of a machine that stays awake (the NAS), naming the one that sleeps`},
		{"managed", `testdata/managed.bad.yaml: 5 problems:
  ollama.binary is empty: give the ollama program's path or name, e.g. "/usr/local/bin/ollama"
  ollama.env "1BAD" is not a variable name: use letters, digits and _, not starting with a digit (e.g. OLLAMA_FLASH_ATTENTION)
  ollama.env.OLLAMA_MODELS is set by hearth from its own keys (ollama.url, storage.models_dir, ollama.parallel, ollama.max_loaded, ollama.keep_alive, storage.prune_owner): remove it
  ollama.keep_alive "soon": give a duration such as "30m", seconds, or "-1" to keep models loaded
  idle.after and idle.command go together: set both (e.g. after: 30m, command: "systemctl suspend") or neither`},
		{"many", `testdata/many.bad.yaml: 3 problems:
  node.name is empty: give this machine a name such as "gpu-pc"
  node.max_body 10 B is too small: requests carry whole conversations; use at least "1MiB"
  ollama.poll_interval must be greater than 0 (got 0s)`},
	}
	os.Unsetenv("TEST_UNSET_KEY")
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := LoadAgent("testdata/" + tt.file + ".bad.yaml")
			if err == nil {
				t.Fatal("loaded without error")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestAgentMissingFile(t *testing.T) {
	_, err := LoadAgent("testdata/does-not-exist.yaml")
	if err == nil || !strings.Contains(err.Error(), "does-not-exist.yaml: no such file or directory") {
		t.Fatalf("got %v", err)
	}
}

func TestEnvExpansionKeepsYAMLShape(t *testing.T) {
	// A secret with YAML syntax in it must stay one string value.
	t.Setenv("TEST_TRICKY", "a: b # not a comment, [x]")
	c := DefaultAgent()
	data := []byte("node:\n  api_keys: [\"${TEST_TRICKY}\"]\n  data_dir: /x/$$HOME\n")
	if err := decode("inline.yaml", data, &c, os.LookupEnv); err != nil {
		t.Fatal(err)
	}
	if len(c.Node.APIKeys) != 1 || c.Node.APIKeys[0] != "a: b # not a comment, [x]" || c.Node.DataDir != "/x/$HOME" {
		t.Fatalf("got keys %q data_dir %q", c.Node.APIKeys, c.Node.DataDir)
	}
}
