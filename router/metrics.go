package router

import (
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
