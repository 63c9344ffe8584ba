package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/internal/streamtail"
)

// ForwarderConfig bounds the calls to backends.
type ForwarderConfig struct {
	// ConnectTimeout bounds dialing a backend.
	ConnectTimeout time.Duration
	// FirstByteTimeout bounds the wait for a backend's response headers, which Ollama sends
	// only once a cold model is loaded (streams) or the whole answer is ready (non-streams).
	FirstByteTimeout time.Duration
}

// Forwarder sends raw request bytes to a chosen node and copies the answer back, flushing
// every chunk as it arrives. It never re-encodes a body.
type Forwarder struct {
	// tr is used directly, not through an http.Client: a proxy follows no redirects, and
	// the Client's redirect bookkeeping (a copy of every request's headers) is pure cost.
	tr      *http.Transport
	log     *slog.Logger
	metrics *Metrics
	bufs    sync.Pool
}

// NewForwarder returns a Forwarder with pooled keep-alive connections to backends.
func NewForwarder(cfg ForwarderConfig, m *Metrics, logger *slog.Logger) *Forwarder {
	tr := &http.Transport{
		Proxy:                 nil, // backends are on the LAN: never through HTTP_PROXY
		DialContext:           (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.FirstByteTimeout,
		DisableCompression:    true, // bytes pass through as the backend wrote them
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
	return &Forwarder{
		tr:      tr,
		log:     logging.OrDiscard(logger),
		metrics: m,
		bufs:    sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }},
	}
}

// Close drops idle backend connections.
func (f *Forwarder) Close() { f.tr.CloseIdleConnections() }

// hopHeader reports the headers that are meaningful for one connection only, and
// Authorization/Cookie, which carry the caller's credentials for hearth: the backend must
// never see them. Keys are canonical, as net/http stores them.
func hopHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Authorization", "Cookie":
		return true
	}
	return false
}

// send starts the backend call. A nil error means the backend answered with headers; the
// body has not been read.
func (f *Forwarder) send(ctx context.Context, r *http.Request, t *Target, body io.Reader, length int64, query string) (*http.Response, error) {
	req, err := backendRequest(ctx, r, t, body, length, query)
	if err != nil {
		return nil, err
	}
	return f.tr.RoundTrip(req)
}

// backendRequest is r as sent to t: same method, path under t's, body and headers but the
// hop-by-hop and credential ones, plus t's own.
func backendRequest(ctx context.Context, r *http.Request, t *Target, body io.Reader, length int64, query string) (*http.Request, error) {
	// The URL is built, not formatted and parsed again: NewRequest gets an empty one.
	req, err := http.NewRequestWithContext(ctx, r.Method, "", body)
	if err != nil {
		return nil, err
	}
	host := hostWithoutEmptyPort(t.URL.Host)
	req.URL = &url.URL{Scheme: t.URL.Scheme, Host: host, Path: strings.TrimRight(t.URL.Path, "/") + r.URL.Path, RawQuery: query}
	req.Host = host
	req.ContentLength = length
	req.Header = make(http.Header, len(r.Header)+len(t.Header))
	for k, vs := range r.Header {
		if !hopHeader(k) {
			req.Header[k] = vs
		}
	}
	for k, vs := range t.Header {
		req.Header[k] = vs
	}
	return req, nil
}

// hostWithoutEmptyPort is the host NewRequest would set for host: "h:" becomes "h".
func hostWithoutEmptyPort(host string) string {
	if strings.LastIndex(host, ":") > strings.LastIndex(host, "]") {
		return strings.TrimSuffix(host, ":")
	}
	return host
}

// sendError turns a failed backend call into the answer for the caller: nil when the
// caller itself went away (there is no one to answer).
func sendError(ctx context.Context, node string, err error) *APIError {
	if ctx.Err() != nil {
		return nil
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &APIError{Status: http.StatusServiceUnavailable, Code: "backend_unavailable", RetryAfter: 5,
			Message: fmt.Sprintf("node %s: cannot connect to Ollama (%v); is `ollama serve` running there?", node, op.Err)}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &APIError{Status: http.StatusGatewayTimeout, Code: "backend_timeout", RetryAfter: 5,
			Message: fmt.Sprintf("node %s: Ollama did not start answering in time (ollama.first_byte_timeout); it may still be loading the model, try again", node)}
	}
	return &APIError{Status: http.StatusServiceUnavailable, Code: "backend_unavailable", RetryAfter: 5,
		Message: fmt.Sprintf("node %s: Ollama closed the connection before answering (%v); try again", node, unwrapURL(err))}
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// outcome is what the copy of one response saw.
type outcome struct {
	status    int
	firstByte time.Time // zero: nothing reached the client
	bytes     int64
	cut       error // the backend broke the stream after its first byte
	tail      []byte
}

// relay copies resp to w, flushing after every read so that no chunk waits for the next.
func (f *Forwarder) relay(w http.ResponseWriter, resp *http.Response, node string) outcome {
	defer resp.Body.Close()
	h := w.Header()
	for k, vs := range resp.Header {
		if !hopHeader(k) {
			h[k] = vs
		}
	}
	h.Set("X-Hearth-Node", node)
	w.WriteHeader(resp.StatusCode)
	out := outcome{status: resp.StatusCode}
	// A stream (no length: chunked NDJSON or SSE) is flushed after every read, so no chunk
	// waits for the next; a sized answer is written as the server's buffer fills, which
	// saves a write per response.
	var flusher http.Flusher
	if resp.ContentLength < 0 {
		flusher, _ = w.(http.Flusher)
	}

	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if out.firstByte.IsZero() {
				out.firstByte = time.Now()
			}
			out.bytes += int64(n)
			out.tail = keepTail(out.tail, buf[:n])
			if _, werr := w.Write(buf[:n]); werr != nil {
				return out // the client went away; its context cancels the backend call
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			if resp.Request.Context().Err() == nil {
				out.cut = err
				f.endStream(w, flusher, resp, node, err)
			}
			return out
		}
	}
}

// endStream closes a stream the backend broke with an error event in its own format, so the
// client's parser reports a clean error instead of a silent truncation.
func (f *Forwarder) endStream(w http.ResponseWriter, flusher http.Flusher, resp *http.Response, node string, err error) {
	f.log.Warn("backend broke a stream", "node", node, "path", resp.Request.URL.Path, "err", err)
	if f.metrics != nil {
		f.metrics.streamCuts.WithLabelValues(node).Inc()
	}
	if resp.ContentLength >= 0 {
		return // a sized body cannot take an extra event; the short body tells the client
	}
	ev := streamErrorEvent(resp.Header.Get("Content-Type"), &APIError{
		Status: http.StatusBadGateway, Code: "stream_interrupted",
		Message: fmt.Sprintf("node %s stopped answering in the middle of the response: %v", node, err),
	})
	if _, werr := w.Write(ev); werr == nil && flusher != nil {
		flusher.Flush()
	}
}

// keepTail keeps about the last 4 KiB of a response: enough to read the final chunk's token
// counts without holding the whole answer.
func keepTail(tail, p []byte) []byte { return streamtail.Keep(tail, p) }

// usage reads generated-token counts from the end of a response (see streamtail.TokenCounts).
func usage(tail []byte) (tokens int64, evalTime time.Duration, ok bool) {
	_, tokens, evalTime, ok = streamtail.TokenCounts(tail)
	return tokens, evalTime, ok
}
