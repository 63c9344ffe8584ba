package chain

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/modelname"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/tunnel"
)

// Home is what the chain needs of the tunnel to home: *tunnel.Server.
type Home interface {
	// Do sends req to the home service registered for host and returns its answer unread.
	Do(req *http.Request, host string) (*http.Response, error)
	// Channel reports whether an agent holds the tunnel named name now.
	Channel(name string) bool
}

var _ Home = (*tunnel.Server)(nil)

// homeChannel is the home cluster, reached through the tunnel: it serves the models the
// cluster has (read from its /api/tags), and is given the client's own bytes.
type homeChannel struct {
	tunnel Home
	host   string                          // the tunnel's internal host for home
	models atomic.Pointer[map[string]bool] // the cluster's models, from its /api/tags
	read   atomic.Int64                    // when models was last read (unix nanos)
}

var _ Channel = (*homeChannel)(nil)

func newHomeChannel(t Home, host string) *homeChannel { return &homeChannel{tunnel: t, host: host} }

func (h *homeChannel) Kind() string { return "home" }

// has reports whether the cluster had model when its list was last read.
func (h *homeChannel) has(model string) bool {
	m := h.models.Load()
	return m != nil && (*m)[modelname.Normalize(model)]
}

// list is the cluster's models, nil before the first read.
func (h *homeChannel) list() []string {
	m := h.models.Load()
	if m == nil {
		return nil
	}
	names := make([]string, 0, len(*m))
	for name := range *m {
		names = append(names, name)
	}
	return names
}

func (h *homeChannel) send(ctx context.Context, call *upstreamCall, _ *channelKey) (*http.Response, error) {
	if h.tunnel == nil {
		return nil, ErrHomeOffline
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, call.path, bytes.NewReader(call.body))
	if err != nil {
		return nil, err
	}
	req.URL.RawQuery = call.query
	req.Header = call.header.Clone() // auth.Require already took the relay's token off
	req.ContentLength = int64(len(call.body))
	return h.tunnel.Do(req, h.host)
}

// answer passes home's answer on: home speaks the client's dialect already.
func (h *homeChannel) answer(w http.ResponseWriter, resp *http.Response, body io.Reader, req *chatRequest, report string) count.Usage {
	if req.dialect == apierror.OpenAI {
		return relayOpenAI(w, resp, body, req, report)
	}
	return relayRaw(w, resp, body)
}

// refresh reads the home cluster's models through the tunnel.
func (h *homeChannel) refresh(ctx context.Context) error {
	if h.tunnel == nil {
		return ErrHomeOffline
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/api/tags", nil)
	if err != nil {
		return err
	}
	resp, err := h.tunnel.Do(req, h.host)
	if err != nil {
		return err // keep the last list: home is offline, not empty
	}
	defer resp.Body.Close()
	var tags struct {
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	if resp.StatusCode != http.StatusOK {
		h.models.Store(&map[string]bool{})
		return fmt.Errorf("home answered GET /api/tags with %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&tags); err != nil {
		return fmt.Errorf("home's model list: %w", err)
	}
	models := map[string]bool{}
	for _, m := range tags.Models {
		models[modelname.Normalize(m.Name)] = true
	}
	h.models.Store(&models)
	h.read.Store(time.Now().UnixNano())
	return nil
}
