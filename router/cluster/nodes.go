package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthlab/hearth/router"
)

// PickerMetrics are the routing series: picks by node, model and reason, queue waits,
// failovers and cluster size.
type PickerMetrics struct {
	picks         *prometheus.CounterVec
	queueWait     *prometheus.HistogramVec
	queueTimeouts *prometheus.CounterVec
	queued        prometheus.Gauge
	failovers     *prometheus.CounterVec
}

// NewPickerMetrics registers the series on reg (nil: counted, not exported). size reports
// the number of members for hearth_cluster_nodes.
func NewPickerMetrics(reg prometheus.Registerer, size func() int) (*PickerMetrics, error) {
	m := &PickerMetrics{
		picks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_picks_total", Help: "Requests routed, by node, model and why that node (warm, cold, affinity, retry), and models loaded ahead of need (preload).",
		}, []string{"node", "model", "reason"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_queue_wait_seconds", Help: "Time requests waited for a free slot.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"model"}),
		queueTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_queue_timeouts_total", Help: "Requests that gave up waiting for a free slot.",
		}, []string{"model"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hearth_queue_length", Help: "Requests waiting for a free slot now.",
		}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_failovers_total", Help: "Times a node could not be reached and was passed over.",
		}, []string{"node"}),
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.picks, m.queueWait, m.queueTimeouts, m.queued, m.failovers}
	if size != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hearth_cluster_nodes", Help: "Alive members of the cluster, this node included.",
		}, func() float64 { return float64(size()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// PickNode chooses the node for store operations: the named one, else a serving node whose
// Ollama and store answer — this node first, then by name; for a delete, the first of those
// whose store (or Ollama) holds the model.
func (p *Picker) PickNode(_ context.Context, req router.NodeRequest) (*router.Target, error) {
	peers := p.src.Peers()
	sort.SliceStable(peers, func(i, j int) bool {
		if peers[i].Self != peers[j].Self {
			return peers[i].Self
		}
		return peers[i].Name < peers[j].Name
	})
	var serving, unfit []string
	var fit []Peer
	for _, pr := range peers {
		if pr.Meta.Role != RoleServe {
			continue
		}
		if req.Node == pr.Name {
			if err := unmountedStore(pr); req.Writes && err != nil {
				return nil, err
			}
			return p.storeTarget(pr)
		}
		serving = append(serving, pr.Name)
		if why := storeUnfit(pr); why != "" {
			unfit = append(unfit, pr.Name+" ("+why+")")
			continue
		}
		fit = append(fit, pr)
	}
	switch {
	case req.Node != "":
		slices.Sort(serving)
		return nil, fmt.Errorf("%w: %q (nodes that serve models: %s)", router.ErrNoNode, req.Node, strings.Join(serving, ", "))
	case len(serving) == 0:
		return nil, fmt.Errorf("%w: no node in the cluster serves models", router.ErrNoNode)
	case len(fit) == 0:
		return nil, &router.APIError{Status: http.StatusServiceUnavailable, Code: "no_node_available", RetryAfter: 10,
			Message: fmt.Sprintf("no node can take this now: %s; name one with ?node= (`--node`) to try it anyway", strings.Join(unfit, ", "))}
	}
	if req.Model != "" {
		model := router.NormalizeModel(req.Model)
		for _, pr := range fit {
			if pr.Inventory.OnStore(model) || pr.Inventory.Has(model) {
				return p.storeTarget(pr)
			}
		}
	}
	return p.storeTarget(fit[0])
}

// storeUnfit says why a serving node should not get a store operation it was not named
// for ("" when it may): a pull to an Ollama that does not answer fails, one to a hung store
// hangs.
func storeUnfit(pr Peer) string {
	switch {
	case !pr.Meta.BackendOK:
		return "its Ollama is not answering"
	case !pr.Meta.StorageOK:
		return "its " + storeDown(pr)
	}
	return ""
}

// unmountedStore refuses a write to a node whose store must be a mount (require_mount) and
// is not: the files would land on the local disk under the mount point, filling it, and be
// hidden once the share is mounted again. A named node is otherwise taken as it is.
func unmountedStore(pr Peer) error {
	st := pr.Inventory.Storage
	if st == nil || !st.Required || st.Mounted {
		return nil
	}
	return &router.APIError{Status: http.StatusServiceUnavailable, Code: "store_not_mounted", RetryAfter: 10,
		Message: fmt.Sprintf("node %s's model store %s is not mounted (%s): a write there would land on its local disk under the mount point; mount the share first (`hearth models doctor`)",
			pr.Name, st.Dir, st.Error)}
}

func (p *Picker) storeTarget(pr Peer) (*router.Target, error) {
	if pr.Self && p.local != nil {
		// A pull of many GB is work in flight on this node, as router.Single counts it: the
		// node's sleep inhibitor and idle timer see it.
		var end func()
		if lc, ok := p.local.(router.LoadCounter); ok {
			end = lc.Begin(p.cfg.Self)
		}
		t := router.NewTarget(pr.Name, p.local.State().URL, func(router.Outcome) {
			if end != nil {
				end()
			}
		})
		t.Reason = "local"
		return t, nil
	}
	u, err := url.Parse(pr.Meta.API)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%w: node %s advertises no usable API address (%q)", router.ErrNoNode, pr.Name, pr.Meta.API)
	}
	t := router.NewTarget(pr.Name, u, nil)
	t.Header = p.cfg.Header
	t.Reason = "store"
	return t, nil
}

// Nodes is every model-serving node's state, for the listings and /readyz.
func (p *Picker) Nodes() []router.NodeState {
	var out []router.NodeState
	for _, pr := range p.src.Peers() {
		if pr.Meta.Role != RoleServe {
			continue
		}
		st := router.NodeState{Name: pr.Name, Healthy: pr.Meta.BackendOK, Inventory: pr.Inventory, Checked: time.Now()}
		if pr.Self && p.local != nil {
			st = p.local.State()
		} else if u, err := url.Parse(pr.Meta.API); err == nil {
			st.URL = u
		}
		if !st.Healthy && st.Problem == "" {
			st.Problem = "its Ollama is not answering"
		}
		out = append(out, st)
	}
	return out
}

// Refresh re-reads this node's backend; other nodes' state arrives by gossip.
func (p *Picker) Refresh(ctx context.Context) {
	if p.local != nil {
		_ = p.local.Refresh(ctx)
	}
}

// ClusterView describes every member for GET /hearth/v1/cluster and `hearth status`.
func (p *Picker) ClusterView() router.ClusterView {
	peers := p.src.Peers()
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	p.mu.Lock()
	defer p.mu.Unlock()
	v := router.ClusterView{Self: p.cfg.Self, Queued: len(p.queue)}
	for _, pr := range peers {
		nv := router.NodeView{
			Name: pr.Name, Role: "serve", API: pr.Meta.API, Self: pr.Self,
			Backend: pr.Meta.BackendOK, StorageOK: pr.Meta.StorageOK, Slots: int(pr.Meta.Slots),
			InFlight: int(pr.Meta.InFlight), Mine: p.mine[pr.Name], Queued: int(pr.Meta.Queued),
			Warm: modelNames(pr.Inventory.Loaded), Models: modelNames(pr.Inventory.Models),
		}
		if pr.Meta.Role == RoleRouter {
			nv.Role = "router"
		}
		storeView(&nv, pr)
		if pr.Self && p.local != nil {
			nv.Problem = p.local.State().Problem
		}
		v.Nodes = append(v.Nodes, nv)
	}
	return v
}

func modelNames(models []router.ModelInfo) []string {
	out := make([]string, 0, len(models))
	for _, m := range models {
		out = append(out, m.Name)
	}
	return out
}
