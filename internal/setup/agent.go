package setup

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/hearthlab/hearth/internal/config"
)

// Agent is what `hearth init agent` is told.
type Agent struct {
	// Name is the node's name in the cluster. Default: the host name (the caller passes it).
	Name string
	// Relay ("ai.example.com:7000") and Token hold the tunnel; one home machine holds it.
	Relay, Token string
	// RelayCA is a PEM file of the CA that signed a brought relay certificate. Default: the
	// system's roots (an ACME certificate).
	RelayCA string
	// Join lists agents already in the cluster ("nas.lan:7946"); ClusterSecret is theirs.
	// With no Join, a fresh secret is made and printed for the next machines.
	Join          []string
	ClusterSecret string
	// OllamaURL is the local Ollama. Default $OLLAMA_HOST, else http://127.0.0.1:11434.
	OllamaURL string
	// NoOllama is a machine without one (a NAS): it joins the cluster and routes.
	NoOllama bool
	// ModelsDir is Ollama's models directory on shared storage (storage.models_dir); the
	// systemd unit then waits for its mount.
	ModelsDir string
	// Dir is where agent.yaml and agent.env go. Default /etc/hearth.
	Dir string
	// StateDir is node.data_dir. Default /var/lib/hearth.
	StateDir string
	// Force replaces existing files.
	Force bool
}

// ClusterPort is the gossip port init writes.
const ClusterPort = "7946"

// Ollama is what the local Ollama said.
type Ollama struct {
	URL string
	// Models are its models; nil when it did not answer.
	Models []string
	// Err says why it did not answer.
	Err error
}

// WriteAgent writes agent.yaml and agent.env (0600): the tunnel when Relay is given, a cluster
// with a fresh secret or the one joined, and the local Ollama as found.
func WriteAgent(ctx context.Context, o Agent, env Env) (Written, Ollama, error) {
	env = env.complete()
	if o.Dir == "" {
		o.Dir = "/etc/hearth"
	}
	if o.StateDir == "" {
		o.StateDir = "/var/lib/hearth"
	}
	if o.OllamaURL == "" {
		o.OllamaURL = OllamaFromEnv(env.Getenv("OLLAMA_HOST"))
	}
	if err := checkAgentOptions(o); err != nil {
		return Written{}, Ollama{}, err
	}
	if err := absPaths(&o.Dir, &o.StateDir, &o.RelayCA); err != nil {
		return Written{}, Ollama{}, err
	}
	secret := o.ClusterSecret
	if secret == "" {
		var err error
		if secret, err = secretBase64(env.Random, 32); err != nil {
			return Written{}, Ollama{}, err
		}
	}
	found := Ollama{URL: ""}
	if o.NoOllama {
		o.OllamaURL = ""
	} else {
		found = FindOllama(ctx, env.HTTP, o.OllamaURL)
	}
	cfgPath, envPath := filepath.Join(o.Dir, "agent.yaml"), filepath.Join(o.Dir, "agent.env")
	vars := [][2]string{{"HEARTH_CLUSTER_KEY", secret}}
	if o.Relay != "" {
		vars = append(vars, [2]string{"HEARTH_TUNNEL_TOKEN", o.Token})
	}
	files := []file{
		{path: cfgPath, mode: 0o644, data: RenderAgent(o, found, envPath)},
		{path: envPath, mode: 0o600, secret: true, data: envFile(
			"# Secrets of this hearth agent (written by `hearth init agent`); keep this file private.\n"+
				"# HEARTH_CLUSTER_KEY is the same on every home machine.\n", vars)},
	}
	err := writeFiles(files, o.Force, env, func(tmp map[string]string) error {
		lookup, err := readBack(tmp[envPath], vars)
		if err != nil {
			return renamedError(err, tmp)
		}
		if _, err := config.LoadAgentWith(tmp[cfgPath], lookup); err != nil {
			return renamedError(fmt.Errorf("setup: the agent config written does not load: %w", err), tmp)
		}
		return nil
	})
	if err != nil {
		return Written{}, found, err
	}
	next := []string{"wrote " + cfgPath + " and " + envPath + " (secrets, mode 0600)"}
	switch {
	case o.NoOllama:
		next = append(next, "", "No Ollama here: this agent joins the cluster and routes requests to the machines that have one.")
	case found.Err != nil:
		next = append(next, "", "Ollama did not answer at "+found.URL+": "+found.Err.Error(),
			"Start Ollama (or pass --ollama URL and run init again with --force); the agent waits for it and serves its models once it answers.")
	default:
		next = append(next, "", fmt.Sprintf("Ollama at %s has %d model(s)%s", found.URL, len(found.Models), listSuffix(found.Models)))
	}
	start := "systemctl enable --now hearth-agent"
	if env.GOOS == "darwin" { // install.sh's plist, in the session of the user who runs Ollama
		start = "launchctl bootstrap gui/$(id -u) /Library/LaunchAgents/dev.hearth.agent.plist"
	}
	next = append(next, "",
		"Start the agent:   "+start+"   (or: hearth agent --config "+cfgPath+")",
		"Check it:          "+withConfig("hearth doctor --role agent", cfgPath, config.DefaultAgentPath),
		"", "To add another home machine to this cluster, run there:", "",
		"  hearth init agent --name NAME --join "+o.Name+":"+ClusterPort+" --cluster-secret KEY",
		"",
		"with KEY the value of HEARTH_CLUSTER_KEY in "+envPath+" (sudo cat it: secrets are not printed).")
	return Written{Config: cfgPath, EnvFile: envPath, Next: next}, found, nil
}

func listSuffix(models []string) string {
	if len(models) == 0 {
		return " (pull one: ollama pull qwen3:4b)"
	}
	return ": " + strings.Join(models, ", ")
}

func checkAgentOptions(o Agent) error {
	if strings.TrimSpace(o.Name) == "" {
		return fmt.Errorf("--name is empty: give this machine a name such as gpu-pc")
	}
	if strings.ContainsAny(o.Name, "\n\"\\") {
		return fmt.Errorf("--name %q: use letters, digits, dots and dashes", o.Name)
	}
	if (o.Relay == "") != (o.Token == "") {
		return fmt.Errorf("--relay and --token go together: paste the line `hearth init relay` printed on the VPS")
	}
	if o.Relay != "" {
		if _, port, err := net.SplitHostPort(o.Relay); err != nil || port == "" {
			return fmt.Errorf("--relay %q: give the relay's host:port, e.g. ai.example.com:%s", o.Relay, TunnelPort)
		}
	}
	for _, v := range [][2]string{{"--token", o.Token}, {"--cluster-secret", o.ClusterSecret}} {
		if p := envValueProblem(v[1]); p != "" {
			return fmt.Errorf("%s holds %s: paste it exactly as printed (the secrets hearth makes are hex or base64)", v[0], p)
		}
	}
	if len(o.Join) > 0 && o.ClusterSecret == "" {
		return fmt.Errorf("--join needs --cluster-secret: the HEARTH_CLUSTER_KEY of the machines already in the cluster (in their agent.env)")
	}
	for _, j := range o.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("--join %q: give a cluster member's host:port, e.g. nas.lan:%s", j, ClusterPort)
		}
	}
	return nil
}

// OllamaFromEnv is the Ollama URL that OLLAMA_HOST names, read the way the ollama CLI reads
// it ("0.0.0.0", ":11434", "host:port" or a URL); "" gives http://127.0.0.1:11434. A
// listen-everywhere host is reached on loopback.
func OllamaFromEnv(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return "http://127.0.0.1:11434"
	}
	scheme, hostport, ok := strings.Cut(v, "://")
	if !ok {
		scheme, hostport = "http", v
	}
	hostport = strings.TrimRight(hostport, "/")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "11434"
		if scheme == "https" {
			port = "443"
		}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// FindOllama asks the Ollama at base for its models (/api/tags).
func FindOllama(ctx context.Context, client *http.Client, base string) Ollama {
	out := Ollama{URL: base}
	if _, err := url.Parse(base); err != nil {
		out.Err = err
		return out
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/tags", nil)
	if err != nil {
		out.Err = err
		return out
	}
	resp, err := client.Do(req)
	if err != nil {
		out.Err = fmt.Errorf("no answer (%v)", err)
		return out
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		out.Err = fmt.Errorf("GET /api/tags answered %s", resp.Status)
		return out
	}
	var tags struct {
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&tags); err != nil {
		out.Err = fmt.Errorf("GET /api/tags: not Ollama's answer (%v)", err)
		return out
	}
	out.Models = []string{}
	for _, m := range tags.Models {
		out.Models = append(out.Models, m.Name)
	}
	return out
}

// RenderAgent is agent.yaml for o: what differs from the defaults, and nothing secret.
func RenderAgent(o Agent, found Ollama, envPath string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# hearth agent on %s, written by `hearth init agent`. ${VAR}s come from %s.\n", o.Name, envPath)
	b.WriteString("# Check: hearth config check --role agent FILE. Every key, annotated: configs/agent.yaml.\n")
	fmt.Fprintf(&b, "node: { name: %s, listen: \"0.0.0.0:11500\", data_dir: %s }\n", quote(o.Name), quote(o.StateDir))
	switch {
	case o.NoOllama:
		b.WriteString("# No Ollama on this machine: it routes for the others.\n")
	case found.Err != nil:
		fmt.Fprintf(&b, "# Ollama did not answer at %s when this was written.\n", safeComment(found.URL))
	default:
		fmt.Fprintf(&b, "# Ollama had %d model(s)%s\n", len(found.Models), safeComment(listSuffix(found.Models)))
	}
	fmt.Fprintf(&b, "ollama: { url: %s }\n", quote(o.OllamaURL))
	join := ""
	if len(o.Join) > 0 {
		q := make([]string, len(o.Join))
		for i, j := range o.Join {
			q[i] = quote(j)
		}
		join = ", join: [" + strings.Join(q, ", ") + "]"
	}
	fmt.Fprintf(&b, "cluster: { bind: \"0.0.0.0:%s\"%s, secret: \"${HEARTH_CLUSTER_KEY}\" }\n", ClusterPort, join)
	if o.ModelsDir != "" {
		fmt.Fprintf(&b, "storage: { models_dir: %s, require_mount: true }\n", quote(o.ModelsDir))
	}
	if o.Relay != "" {
		ca := ""
		if o.RelayCA != "" {
			ca = ", ca: " + quote(o.RelayCA)
		}
		fmt.Fprintf(&b, "tunnel: { relay: %s, token: \"${HEARTH_TUNNEL_TOKEN}\"%s }\n", quote(o.Relay), ca)
	}
	return []byte(b.String())
}

// safeComment keeps what Ollama said on one comment line.
func safeComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
