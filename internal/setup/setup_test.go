package setup_test

import (
	"bytes"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/ollamasim"
	"github.com/hearthlab/hearth/internal/setup"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// countingReader gives 0, 1, 2, ... so that secrets, and so goldens, are stable.
type countingReader struct{ n byte }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.n
		c.n++
	}
	return len(p), nil
}

type chownLog struct{ paths []string }

func (c *chownLog) chown(path string) error { c.paths = append(c.paths, path); return nil }

func testEnv(c *chownLog) setup.Env {
	return setup.Env{Random: &countingReader{}, Chown: c.chown, Getenv: func(string) string { return "" }, GOOS: "linux"}
}

// golden compares got with testdata/name, after replacing what differs between runs.
func golden(t *testing.T, name string, got []byte, replace ...string) {
	t.Helper()
	got = []byte(strings.NewReplacer(replace...).Replace(string(got)))
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteRelay(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    setup.Relay
	}{
		{"relay-acme", setup.Relay{Domain: "ai.example.com", Email: "me@example.com"}},
		{"relay-byo", setup.Relay{Domain: "ai.example.com", Cert: "/etc/hearth/fullchain.pem", Key: "/etc/hearth/privkey.pem"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var ch chownLog
			o := tt.o
			o.Dir = dir
			w, err := setup.WriteRelay(o, testEnv(&ch))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".yaml", readFile(t, w.Config), dir, "DIR")
			golden(t, tt.name+".env", readFile(t, w.EnvFile), dir, "DIR")
			golden(t, tt.name+".next.txt", []byte(strings.Join(w.Next, "\n")+"\n"), dir, "DIR")
			if lines := bytes.Count(readFile(t, w.Config), []byte("\n")); lines > 15 {
				t.Errorf("relay.yaml has %d lines, want at most 15", lines)
			}
			fi, _ := os.Stat(w.EnvFile)
			if fi.Mode().Perm() != 0o600 || len(ch.paths) != 1 || !strings.HasPrefix(filepath.Base(ch.paths[0]), ".relay.env.") {
				t.Errorf("env file mode %v, chown %v", fi.Mode().Perm(), ch.paths)
			}
			// The pair loads with the loaders the relay uses, with the secrets from the env file.
			env, err := config.ReadEnvFile(w.EnvFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.LoadRelayWith(w.Config, config.EnvLookup(env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Tunnel.Token != env["HEARTH_TUNNEL_TOKEN"] || len(cfg.Tunnel.Token) != 48 || cfg.AdminKey == cfg.Tunnel.Token {
				t.Errorf("tunnel token %q, admin key %q", cfg.Tunnel.Token, cfg.AdminKey)
			}
			if !strings.Contains(w.Next[len(w.Next)-1]+strings.Join(w.Next, "\n"), "hearth init agent --relay ai.example.com:7000 --token "+cfg.Tunnel.Token) {
				t.Errorf("the paste line is missing:\n%s", strings.Join(w.Next, "\n"))
			}
		})
	}
}

// Both inits refuse to replace what is there without --force (whose secrets then change),
// and leave nothing else behind.
func TestInitRefusesToOverwrite(t *testing.T) {
	for _, tt := range []struct {
		role  string
		write func(dir string, force bool, env setup.Env) error
	}{
		{"relay", func(dir string, force bool, env setup.Env) error {
			_, err := setup.WriteRelay(setup.Relay{Domain: "ai.example.com", Email: "me@example.com", Dir: dir, Force: force}, env)
			return err
		}},
		{"agent", func(dir string, force bool, env setup.Env) error {
			o := setup.Agent{Name: "gpu-pc", Relay: "ai.example.com:7000", Token: "0123456789abcdef0123456789abcdef",
				OllamaURL: "http://127.0.0.1:1", Dir: dir, Force: force}
			_, _, err := setup.WriteAgent(t.Context(), o, env)
			return err
		}},
	} {
		t.Run(tt.role, func(t *testing.T) {
			dir := t.TempDir()
			var ch chownLog
			if err := tt.write(dir, false, testEnv(&ch)); err != nil {
				t.Fatal(err)
			}
			envPath := filepath.Join(dir, tt.role+".env")
			before := readFile(t, envPath)
			err := tt.write(dir, false, setup.Env{Chown: ch.chown})
			if err == nil || err.Error() != filepath.Join(dir, tt.role+".yaml")+" exists: pass --force to replace it (its secrets will change), or --dir DIR to write elsewhere" {
				t.Fatalf("second init: %v", err)
			}
			if !bytes.Equal(before, readFile(t, envPath)) {
				t.Error("a refused init changed the env file")
			}
			if err := tt.write(dir, true, setup.Env{Chown: ch.chown}); err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(before, readFile(t, envPath)) {
				t.Error("--force kept the old secrets")
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 2 {
				t.Errorf("%d files in the dir, want %s.yaml and %s.env only", len(entries), tt.role, tt.role)
			}
		})
	}
}

func TestInitOptionErrors(t *testing.T) {
	dir := t.TempDir()
	env := testEnv(&chownLog{})
	relayTests := []struct {
		o    setup.Relay
		want string
	}{
		{setup.Relay{Email: "me@example.com"}, "--domain is required"},
		{setup.Relay{Domain: "https://ai.example.com", Email: "me@example.com"}, "give a bare DNS name"},
		{setup.Relay{Domain: "1.2.3.4", Email: "me@example.com"}, "give a bare DNS name"},
		{setup.Relay{Domain: "ai.example.com"}, "--email is required for ACME"},
		{setup.Relay{Domain: "ai.example.com", Cert: "c.pem"}, "--cert and --key go together"},
	}
	for _, tt := range relayTests {
		tt.o.Dir = dir
		if _, err := setup.WriteRelay(tt.o, env); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.o, err, tt.want)
		}
	}
	agentTests := []struct {
		o    setup.Agent
		want string
	}{
		{setup.Agent{}, "--name is empty"},
		{setup.Agent{Name: "pc", Relay: "ai.example.com:7000"}, "--relay and --token go together"},
		{setup.Agent{Name: "pc", Relay: "ai.example.com", Token: "0123456789abcdef0123"}, "give the relay's host:port"},
		{setup.Agent{Name: "pc", Join: []string{"nas.lan:7946"}}, "--join needs --cluster-secret"},
		{setup.Agent{Name: "pc", Join: []string{"nas.lan"}, ClusterSecret: "x"}, "give a cluster member's host:port"},
		// Caught by the config loader on the written file, which then is not left behind.
		{setup.Agent{Name: "pc", Join: []string{"nas.lan:7946"}, ClusterSecret: "not base64!"},
			"setup: the agent config written does not load: " + filepath.Join(dir, "agent.yaml") + ": cluster.secret is not base64"},
		{setup.Agent{Name: "pc", Relay: "ai.example.com:7000", Token: "short"}, "tunnel.token must be the relay's tunnel.token"},
		// A value the env file would not give back as given (a line break would even add a variable).
		{setup.Agent{Name: "pc", Relay: "ai.example.com:7000", Token: "0123456789abcdef0123456789abcdef\nHEARTH_CLUSTER_KEY=AAAA"},
			`--token holds the character '\n': paste it exactly as printed`},
		{setup.Agent{Name: "pc", Relay: "ai.example.com:7000", Token: "0123456789abcdef0123456789abcdef "}, "--token holds spaces at its ends"},
		{setup.Agent{Name: "pc", Join: []string{"nas.lan:7946"}, ClusterSecret: `"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="`},
			`--cluster-secret holds the character '"'`},
	}
	for _, tt := range agentTests {
		tt.o.Dir, tt.o.OllamaURL = dir, "http://127.0.0.1:1"
		if _, _, err := setup.WriteAgent(t.Context(), tt.o, env); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.o, err, tt.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed inits left %d files behind", len(entries))
	}
}

func TestWriteAgent(t *testing.T) {
	sim := ollamasim.New(ollamasim.Config{Models: []ollamasim.Model{{Name: "qwen3:4b"}, {Name: "nomic-embed-text"}}})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	tests := []struct {
		name   string
		o      setup.Agent
		ollama string // from OLLAMA_HOST
	}{
		{"agent-tunnel", setup.Agent{Name: "gpu-pc", Relay: "ai.example.com:7000", Token: "0123456789abcdef0123456789abcdef"}, sim.URL()},
		{"agent-join", setup.Agent{Name: "pc2", Join: []string{"gpu-pc.lan:7946"}, ClusterSecret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, down.URL},
		{"agent-nas", setup.Agent{Name: "nas", NoOllama: true, Join: []string{"gpu-pc.lan:7946"}, ClusterSecret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.o.Dir = dir
			env := testEnv(&chownLog{})
			env.Getenv = func(k string) string {
				if k == "OLLAMA_HOST" {
					return strings.TrimPrefix(tt.ollama, "http://")
				}
				return ""
			}
			w, found, err := setup.WriteAgent(t.Context(), tt.o, env)
			if err != nil {
				t.Fatal(err)
			}
			if found.URL != tt.ollama {
				t.Errorf("Ollama URL %q from OLLAMA_HOST, want %q", found.URL, tt.ollama)
			}
			r := []string{dir, "DIR"}
			if tt.ollama != "" {
				r = append(r, tt.ollama, "OLLAMA")
			}
			golden(t, tt.name+".yaml", readFile(t, w.Config), r...)
			golden(t, tt.name+".env", readFile(t, w.EnvFile), r...)
			out := strings.Join(w.Next, "\n") + "\n"
			if found.Err != nil { // the dial error's wording is the OS's
				out = strings.Replace(out, found.Err.Error(), "ERROR", 1)
			}
			golden(t, tt.name+".next.txt", []byte(out), r...)
			env2, _ := config.ReadEnvFile(w.EnvFile)
			cfg, err := config.LoadAgentWith(w.Config, config.EnvLookup(env2))
			if err != nil {
				t.Fatal(err)
			}
			if key, err := cfg.Cluster.Key(); err != nil || len(key) != 32 {
				t.Errorf("cluster key %d bytes, %v", len(key), err)
			}
		})
	}
}

func TestOllamaFromEnv(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "http://127.0.0.1:11434",
		"0.0.0.0":                  "http://127.0.0.1:11434",
		":11435":                   "http://127.0.0.1:11435",
		"gpu.lan:11434":            "http://gpu.lan:11434",
		"https://ollama.lan":       "https://ollama.lan:443",
		"http://[::]:11434/":       "http://127.0.0.1:11434",
		"http://192.168.1.5:8080":  "http://192.168.1.5:8080",
		" http://127.0.0.1:11434 ": "http://127.0.0.1:11434",
	} {
		if got := setup.OllamaFromEnv(in); got != want {
			t.Errorf("OLLAMA_HOST %q: %q, want %q", in, got, want)
		}
	}
}

// The models directory goes into agent.yaml as storage.models_dir (whose loader is the
// storage work's: this checks the rendering only) and into the unit's drop-in (systemd_test.go).
func TestRenderAgentModelsDir(t *testing.T) {
	got := string(setup.RenderAgent(setup.Agent{Name: "nas", OllamaURL: "http://127.0.0.1:11434", ModelsDir: "/mnt/nas/ollama-models"},
		setup.Ollama{URL: "http://127.0.0.1:11434", Models: []string{}}, "/etc/hearth/agent.env"))
	if !strings.Contains(got, "storage: { models_dir: \"/mnt/nas/ollama-models\", require_mount: true }\n") {
		t.Errorf("agent.yaml lacks the storage line:\n%s", got)
	}
}

// On a Mac the agent is launchd's (install.sh's plist), not systemd's.
func TestWriteAgentOnAMac(t *testing.T) {
	env := testEnv(&chownLog{})
	env.GOOS = "darwin"
	w, _, err := setup.WriteAgent(t.Context(), setup.Agent{Name: "mac", Dir: t.TempDir(), NoOllama: true}, env)
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Join(w.Next, "\n")
	if !strings.Contains(next, "Start the agent:   launchctl bootstrap gui/$(id -u) /Library/LaunchAgents/dev.hearth.agent.plist") ||
		strings.Contains(next, "systemctl") {
		t.Errorf("next steps on a Mac:\n%s", next)
	}
}

// Paths given relative to the shell (`--cert fullchain.pem` in the directory certbot wrote)
// are written absolute: the service starts elsewhere (systemd in /), where they did not load.
func TestInitWritesAbsolutePaths(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	w, err := setup.WriteRelay(setup.Relay{Domain: "ai.example.com", Dir: "etc", StateDir: "state", Cert: "fullchain.pem", Key: "privkey.pem"},
		testEnv(&chownLog{}))
	if err != nil {
		t.Fatal(err)
	}
	env, err := config.ReadEnvFile(filepath.Join(dir, "etc", "relay.env"))
	if err != nil {
		t.Fatal(err)
	}
	relay, err := config.LoadRelayWith(w.Config, config.EnvLookup(env))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "etc", "relay.yaml"); w.Config != want {
		t.Errorf("relay config at %s, want %s", w.Config, want)
	}
	if relay.TLS.Cert != filepath.Join(dir, "fullchain.pem") || relay.TLS.Key != filepath.Join(dir, "privkey.pem") || relay.DB != filepath.Join(dir, "state", "relay.db") {
		t.Errorf("relay.yaml has tls %+v, db %q: want them under %s", relay.TLS, relay.DB, dir)
	}

	w, _, err = setup.WriteAgent(t.Context(), setup.Agent{Name: "gpu-pc", Dir: "home", StateDir: "hstate", NoOllama: true,
		Relay: "ai.example.com:7000", Token: "0123456789abcdef0123456789abcdef", RelayCA: "ca.pem"}, testEnv(&chownLog{}))
	if err != nil {
		t.Fatal(err)
	}
	env, err = config.ReadEnvFile(filepath.Join(dir, "home", "agent.env"))
	if err != nil {
		t.Fatal(err)
	}
	agent, err := config.LoadAgentWith(w.Config, config.EnvLookup(env))
	if err != nil {
		t.Fatal(err)
	}
	if agent.Tunnel.CA != filepath.Join(dir, "ca.pem") || agent.Node.DataDir != filepath.Join(dir, "hstate") {
		t.Errorf("agent.yaml has tunnel.ca %q, node.data_dir %q: want them under %s", agent.Tunnel.CA, agent.Node.DataDir, dir)
	}
}
