package router

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsSeries: each answered request counts once in its series, and a series appears
// only once something was recorded in it (cached children are created on first use).
func TestMetricsSeries(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/show" {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":"boom"}`)
			return
		}
		_, _ = io.WriteString(w, `{"done":true,"eval_count":4,"eval_duration":2000000000}`)
	}))
	t.Cleanup(backend.Close)
	ts := newTestServer(t, healthyNode(t, backend.URL, "tiny:latest"), nil)
	for range 3 {
		post(t, ts.url+"/api/chat", `{"model":"tiny"}`)
	}
	post(t, ts.url+"/api/show", `{"model":"tiny"}`)
	post(t, ts.url+"/api/generate", `{"model":"missing"}`)

	m := ts.metrics
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"chat 200", testutil.ToFloat64(m.requests.WithLabelValues("chat", "tiny:latest", "200")), 3},
		{"show 500", testutil.ToFloat64(m.requests.WithLabelValues("show", "tiny:latest", "500")), 1},
		{"generate 404", testutil.ToFloat64(m.requests.WithLabelValues("generate", "", "404")), 1},
		{"tokens", testutil.ToFloat64(m.tokens.WithLabelValues("tiny:latest", "node-a")), 12},
		{"in flight", testutil.ToFloat64(m.inFlight.WithLabelValues("chat")), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			got = append(got, mf.GetName()+"{"+strings.Join(labels, ",")+"}")
		}
	}
	want := []string{
		"hearth_generated_tokens_total{tiny:latest,node-a}",
		"hearth_generation_tokens_per_second{tiny:latest,node-a}",
		"hearth_request_duration_seconds{tiny:latest,chat}",
		"hearth_request_duration_seconds{tiny:latest,show}",
		"hearth_requests_in_flight{chat}",
		"hearth_requests_in_flight{generate}",
		"hearth_requests_in_flight{show}",
		"hearth_requests_total{tiny:latest,chat,200}",
		"hearth_requests_total{,generate,404}",
		"hearth_requests_total{tiny:latest,show,500}",
		"hearth_time_to_first_token_seconds{tiny:latest,chat}",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("series\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
