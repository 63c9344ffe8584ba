package router

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the request path's Prometheus series. Register them on the role's own registry:
// hearth keeps no global metrics.
type Metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	ttft       *prometheus.HistogramVec
	tokens     *prometheus.CounterVec
	tokensRate *prometheus.HistogramVec
	inFlight   *prometheus.GaugeVec
	streamCuts *prometheus.CounterVec
	retries    *prometheus.CounterVec

	seriesMu sync.RWMutex
	series   map[seriesKey]*series
}

// seriesKey names the series one answered request updates. The set is bounded: routes are
// fixed, and a model gets this far only once a node has it.
type seriesKey struct{ route, model, node string }

// series are the children of the vectors for one seriesKey, looked up once rather than by
// label values on every request. Each is created on first use, as WithLabelValues would, so
// that /metrics shows the same series.
type series struct {
	ok         func() prometheus.Counter // requests answered 200; other statuses are rarer and looked up
	duration   func() prometheus.Observer
	ttft       func() prometheus.Observer
	tokens     func() prometheus.Counter
	tokensRate func() prometheus.Observer
}

func (m *Metrics) seriesFor(route, model, node string) *series {
	k := seriesKey{route, model, node}
	m.seriesMu.RLock()
	s := m.series[k]
	m.seriesMu.RUnlock()
	if s != nil {
		return s
	}
	s = &series{
		ok:         sync.OnceValue(func() prometheus.Counter { return m.requests.WithLabelValues(route, model, "200") }),
		duration:   sync.OnceValue(func() prometheus.Observer { return m.duration.WithLabelValues(route, model) }),
		ttft:       sync.OnceValue(func() prometheus.Observer { return m.ttft.WithLabelValues(route, model) }),
		tokens:     sync.OnceValue(func() prometheus.Counter { return m.tokens.WithLabelValues(model, node) }),
		tokensRate: sync.OnceValue(func() prometheus.Observer { return m.tokensRate.WithLabelValues(model, node) }),
	}
	m.seriesMu.Lock()
	if m.series == nil {
		m.series = map[seriesKey]*series{}
	}
	if prev := m.series[k]; prev != nil {
		s = prev
	} else {
		m.series[k] = s
	}
	m.seriesMu.Unlock()
	return s
}

// NewMetrics creates the series and registers them on reg (nil: not exported, still counted).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	latency := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_requests_total", Help: "Requests by route, model and response status.",
		}, []string{"route", "model", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_request_duration_seconds", Help: "Time from request to the last byte of the response.", Buckets: latency,
		}, []string{"route", "model"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_time_to_first_token_seconds", Help: "Time from request to the first streamed chunk.", Buckets: latency,
		}, []string{"route", "model"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_generated_tokens_total", Help: "Tokens generated, from Ollama's final chunk or OpenAI usage.",
		}, []string{"model", "node"}),
		tokensRate: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_generation_tokens_per_second", Help: "Generation speed per request.",
			Buckets: []float64{1, 2, 5, 10, 20, 40, 80, 160, 320, 640},
		}, []string{"model", "node"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_requests_in_flight", Help: "Requests being served now.",
		}, []string{"route"}),
		streamCuts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_stream_errors_total", Help: "Responses cut off by the backend after their first byte.",
		}, []string{"node"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_retries_total", Help: "Requests retried on another node after a failure before the first byte, by the node that failed.",
		}, []string{"node", "model"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.ttft, m.tokens, m.tokensRate, m.inFlight, m.streamCuts, m.retries} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
