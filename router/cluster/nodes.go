package cluster

import (
	"context"
	"fmt"
	"net/url"
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

// PickNode chooses the node for store operations: the named one, else this node when it
// serves models, else the first serving node by name.
func (p *Picker) PickNode(_ context.Context, name string) (*router.Target, error) {
	peers := p.src.Peers()
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	var serving []string
	for _, pr := range peers {
		if pr.Meta.Role != RoleServe {
			continue
		}
		serving = append(serving, pr.Name)
		if name == pr.Name || name == "" && pr.Self {
			return p.storeTarget(pr)
		}
	}
	if name == "" && len(serving) > 0 {
		for _, pr := range peers {
			if pr.Name == serving[0] {
				return p.storeTarget(pr)
			}
		}
	}
	if name == "" {
		return nil, fmt.Errorf("%w: no node in the cluster serves models", router.ErrNoNode)
	}
	return nil, fmt.Errorf("%w: %q (nodes that serve models: %s)", router.ErrNoNode, name, strings.Join(serving, ", "))
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
