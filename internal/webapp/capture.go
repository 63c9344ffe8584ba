package webapp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// captureWriter is the ResponseWriter the role's chat handler answers a generation into: it
// cuts an event stream into its events and keeps them, or keeps a whole (error) body.
type captureWriter struct {
	g       *generation
	h       http.Header
	limit   int
	wrote   bool
	sse     bool
	pending []byte // an SSE event not yet ended by a blank line, or a whole body
	over    bool   // the byte limit cut the answer
}

func (c *captureWriter) Header() http.Header { return c.h }

func (c *captureWriter) WriteHeader(status int) {
	if c.wrote {
		return
	}
	c.wrote = true
	c.sse = status < 300 && strings.HasPrefix(c.h.Get("Content-Type"), "text/event-stream")
	c.g.mu.Lock()
	c.g.status, c.g.channel, c.g.model = status, c.h.Get("X-Hearth-Channel"), c.h.Get("X-Hearth-Model")
	c.g.mu.Unlock()
	meta, _ := json.Marshal(map[string]any{"status": status, "channel": c.h.Get("X-Hearth-Channel"), "model": c.h.Get("X-Hearth-Model"), "node": c.h.Get("X-Hearth-Node")})
	c.keep(event{name: "meta", data: meta})
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	if c.over {
		return 0, errTooLong
	}
	c.pending = append(c.pending, p...)
	if !c.sse {
		if len(c.pending) > c.limit {
			c.overLimit()
			return 0, errTooLong
		}
		return len(p), nil
	}
	c.pending = bytes.ReplaceAll(c.pending, []byte("\r\n"), []byte("\n"))
	for {
		i := bytes.Index(c.pending, []byte("\n\n"))
		if i < 0 {
			break
		}
		block := clean(c.pending[:i+1])
		c.pending = c.pending[i+2:]
		if len(block) > 0 && !c.keep(event{data: block}) {
			c.overLimit()
			return 0, errTooLong
		}
	}
	return len(p), nil
}

// Flush is what streaming handlers look for; every event is kept as soon as it is whole.
func (c *captureWriter) Flush() {}

// clean drops an upstream block's id: and comment lines: the generation numbers its events.
func clean(block []byte) []byte {
	var out []byte
	for line := range bytes.SplitSeq(block, []byte("\n")) {
		if len(line) == 0 || line[0] == ':' || bytes.HasPrefix(line, []byte("id:")) || bytes.HasPrefix(line, []byte("retry:")) {
			continue
		}
		out = append(append(out, line...), '\n')
	}
	return out
}

func (c *captureWriter) keep(ev event) bool { return c.g.appendEvent(ev, c.limit) }

func (c *captureWriter) overLimit() {
	c.over = true
	c.g.cancel()
}

// finish records how the generation ended once the role's handler returned; ctxErr is the
// generation context's error (a stop, or the app shutting down).
func (c *captureWriter) finish(ctxErr error) {
	if !c.wrote {
		c.WriteHeader(http.StatusBadGateway)
	}
	g := c.g
	g.mu.Lock()
	status, stopped := g.status, g.stop
	g.mu.Unlock()
	state, detail := "done", ""
	switch {
	case c.over:
		state, detail = "error", fmt.Sprintf("the answer passed the server's limit (%d bytes for one answer, %d for all it keeps) and was stopped",
			c.limit, g.gs.lim.TotalBytes)
	case stopped:
		state = "stopped"
	case status >= 300:
		state = "error"
		body := bytes.TrimSpace(c.pending)
		if len(body) == 0 {
			body, _ = json.Marshal(map[string]any{"error": map[string]string{"message": http.StatusText(status)}})
		}
		c.keep(event{name: "error", data: body})
	case ctxErr != nil:
		state, detail = "error", "the server stopped before the answer ended"
	case !c.sse && len(c.pending) > 0:
		c.keep(event{name: "response", data: bytes.TrimSpace(c.pending)})
	case len(bytes.TrimSpace(c.pending)) > 0:
		c.keep(event{data: clean(append(c.pending, '\n'))})
	}
	end, _ := json.Marshal(map[string]any{"state": state, "status": status, "detail": detail})
	g.mu.Lock()
	g.state = state
	g.mu.Unlock()
	c.keep(event{name: "end", data: end}) // also its finish time
}
