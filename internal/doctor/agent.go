package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hearthlab/hearth/internal/config"
)

// clusterView is the part of GET /hearth/v1/cluster the checks read. Storage is raw: an
// object per contracts.md #2 ({"dir","required","mounted","fs_type","healthy","error",
// "checked_at"}), a bare bool from agents before it, or missing when no models_dir is set.
type clusterView struct {
	Self  string `json:"self"`
	Nodes []struct {
		Name    string          `json:"name"`
		Self    bool            `json:"self"`
		API     string          `json:"api"`
		Backend bool            `json:"backend"`
		Problem string          `json:"problem"`
		Storage json.RawMessage `json:"storage"`
	} `json:"nodes"`
	Tunnel *struct {
		Relay     string    `json:"relay"`
		Connected bool      `json:"connected"`
		Since     time.Time `json:"since"`
		LastError string    `json:"last_error"`
	} `json:"tunnel"`
}

type storageView struct {
	Dir      string `json:"dir"`
	Required bool   `json:"required"`
	Mounted  bool   `json:"mounted"`
	FSType   string `json:"fs_type"`
	Healthy  bool   `json:"healthy"`
	Error    string `json:"error"`
}

// Agent checks a home machine: its ports, the running agent (through its API), its Ollama,
// the model store, the cluster, the tunnel and the clock against the relay or the peers.
func Agent(ctx context.Context, cfg config.Agent, env Env) Report {
	env = env.complete()
	r := Report{Role: "agent"}
	r.Checks = append(r.Checks, env.portCheck("node.listen", cfg.Node.Listen))
	if cfg.Cluster.Bind != "" {
		r.Checks = append(r.Checks, env.portCheck("cluster.bind", cfg.Cluster.Bind))
	}
	r.Checks = append(r.Checks, env.ollamaCheck(ctx, cfg.Ollama.URL))
	view, err := env.fetchView(ctx, cfg)
	if err != nil {
		r.Checks = append(r.Checks, Check{Name: "agent", Say: err.Error()})
	} else {
		r.Checks = append(r.Checks, Check{Name: "agent", OK: true, Say: fmt.Sprintf("the agent %q answers on %s.", view.Self, cfg.Node.Listen)},
			storageCheck(view), peersCheck(cfg, view))
		if cfg.Tunnel.Relay != "" {
			r.Checks = append(r.Checks, tunnelCheck(cfg, view, env.Now()))
		}
	}
	r.Checks = append(r.Checks, env.clockCheck(ctx, env.agentClockRefs(cfg, view)))
	return r
}

// agentClockRefs are the servers an agent's clock is compared with: the relay it tunnels to,
// then its cluster peers (their API's /healthz, open to all). A cluster-only agent (a NAS, a
// second GPU machine) has only its peers; view is empty when the agent did not answer.
func (e Env) agentClockRefs(cfg config.Agent, view clusterView) []clockRef {
	var refs []clockRef
	if cfg.Tunnel.Relay != "" {
		// The relay's HTTPS is on its domain: server_name when tunnel.relay is an address.
		host, _, _ := net.SplitHostPort(cfg.Tunnel.Relay)
		if cfg.Tunnel.ServerName != "" {
			host = cfg.Tunnel.ServerName
		}
		client, err := e.client(host, cfg.Tunnel.CA)
		if err != nil {
			err = fmt.Errorf("tunnel.ca: %v", err)
		}
		refs = append(refs, clockRef{whose: "the relay", url: "https://" + net.JoinHostPort(host, "443") + "/healthz", client: client, broken: err})
	}
	plain, _ := e.client("")
	for _, n := range view.Nodes {
		if n.Self || n.Name == view.Self || n.API == "" {
			continue
		}
		refs = append(refs, clockRef{whose: "the peer " + n.Name, url: strings.TrimRight(n.API, "/") + "/healthz", client: plain})
	}
	return refs
}

func (e Env) ollamaCheck(ctx context.Context, base string) Check {
	c := Check{Name: "ollama"}
	if base == "" {
		c.OK, c.Say = true, "ollama.url is empty: this node routes for the others and serves no models."
		return c
	}
	client, _ := e.client("")
	ctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/version", nil)
	if err != nil {
		c.Say = fmt.Sprintf("ollama.url %q: %v.", base, err)
		return c
	}
	resp, err := client.Do(req)
	if err != nil {
		c.Say = fmt.Sprintf("Ollama does not answer at %s (%v): start it (systemctl start ollama, or `ollama serve`) or fix ollama.url.", base, err)
		return c
	}
	defer resp.Body.Close()
	var v struct {
		Version string `json:"version"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v) != nil || v.Version == "" {
		c.Say = fmt.Sprintf("%s answered GET /api/version with %s, not as Ollama does: is ollama.url right?", base, resp.Status)
		return c
	}
	c.OK, c.Say = true, fmt.Sprintf("Ollama %s answers at %s.", v.Version, base)
	return c
}

func (e Env) fetchView(ctx context.Context, cfg config.Agent) (clusterView, error) {
	var view clusterView
	client, _ := e.client("")
	ctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+Loopback(cfg.Node.Listen)+"/hearth/v1/cluster", nil)
	if len(cfg.Node.APIKeys) > 0 {
		req.Header.Set("Authorization", "Bearer "+cfg.Node.APIKeys[0])
	}
	resp, err := client.Do(req)
	if err != nil {
		return view, fmt.Errorf("the agent does not answer on %s (%v): is it running? (systemctl status hearth-agent); the tunnel, storage and cluster checks need it", cfg.Node.Listen, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		return view, fmt.Errorf("the agent answered GET /hearth/v1/cluster with %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &view); err != nil {
		return view, fmt.Errorf("the agent's /hearth/v1/cluster is not what hearth answers: %v", err)
	}
	return view, nil
}

func storageCheck(view clusterView) Check {
	c := Check{Name: "model store"}
	for _, n := range view.Nodes {
		if !n.Self && n.Name != view.Self {
			continue
		}
		raw := strings.TrimSpace(string(n.Storage))
		if raw == "" || raw == "null" || raw == "true" {
			c.OK, c.Say = true, "no shared models directory is configured (storage.models_dir): Ollama keeps its own."
			return c
		}
		if raw == "false" {
			c.Say = "the agent reports its model store unhealthy: see its log."
			return c
		}
		var s storageView
		if err := json.Unmarshal(n.Storage, &s); err != nil {
			c.Say = fmt.Sprintf("the agent's storage report is unreadable: %v.", err)
			return c
		}
		switch {
		case s.Required && !s.Mounted:
			c.Say = fmt.Sprintf("%s is not mounted yet: the agent waits for it (mount it, or check /etc/fstab and the NFS server).", s.Dir)
		case !s.Healthy:
			c.Say = fmt.Sprintf("%s (%s) is not healthy: %s.", s.Dir, s.FSType, strings.TrimSuffix(s.Error, "."))
		default:
			c.OK, c.Say = true, fmt.Sprintf("%s is mounted (%s) and answers.", s.Dir, s.FSType)
		}
		return c
	}
	c.Say = "the agent's cluster view does not list this node."
	return c
}

func peersCheck(cfg config.Agent, view clusterView) Check {
	c := Check{Name: "cluster"}
	if cfg.Cluster.Bind == "" {
		c.OK, c.Say = true, "the cluster is off (cluster.bind is empty): this agent serves alone."
		return c
	}
	var peers []string
	for _, n := range view.Nodes {
		if !n.Self && n.Name != view.Self {
			peers = append(peers, n.Name)
		}
	}
	switch {
	case len(peers) > 0:
		c.OK, c.Say = true, fmt.Sprintf("%d peer(s) seen: %s.", len(peers), strings.Join(peers, ", "))
	case len(cfg.Cluster.Join) > 0:
		c.Say = fmt.Sprintf("no peer seen though cluster.join names %s: is hearth running there, is port %s open between the machines, and is cluster.secret the same?",
			strings.Join(cfg.Cluster.Join, ", "), portOf(cfg.Cluster.Bind))
	default:
		c.OK, c.Say = true, "no other node has joined yet (this is the first; others join with --join this-host:"+portOf(cfg.Cluster.Bind)+")."
	}
	return c
}

func tunnelCheck(cfg config.Agent, view clusterView, now time.Time) Check {
	c := Check{Name: "tunnel"}
	t := view.Tunnel
	if t == nil {
		c.Say = "the running agent holds no tunnel, though tunnel.relay is set: restart it to read this config."
		return c
	}
	if !t.Connected {
		why := t.LastError
		if why == "" {
			why = "no error yet: still connecting"
		}
		c.Say = fmt.Sprintf("not connected to the relay %s: %s.", t.Relay, strings.TrimSuffix(why, "."))
		return c
	}
	c.OK, c.Say = true, fmt.Sprintf("connected to the relay %s %s.", t.Relay, connectedSince(t.Since, now))
	return c
}
