package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/hearthlab/hearth/router"
)

// agentAPI is how the operator commands (status, models, wake, rag) reach an agent: its API
// URL and the cluster's API key, from --agent and --key (default $HEARTH_API_KEY). One
// request goes to the --agent URL, or to another node's API found in the cluster view.
type agentAPI struct {
	url, key string
}

// flags adds --agent (described by what) and --key to fs.
func (a *agentAPI) flags(fs *pflag.FlagSet, what string) {
	fs.StringVar(&a.url, "agent", "http://127.0.0.1:11500", what)
	fs.StringVar(&a.key, "key", "", "API key for the agents (default $HEARTH_API_KEY)")
}

func (a *agentAPI) apiKey() string {
	if a.key != "" {
		return a.key
	}
	return os.Getenv("HEARTH_API_KEY")
}

// do sends one request to base+path (base "" is the --agent URL) and returns the answer
// whatever its status; only an unreachable agent is an error.
func (a *agentAPI) do(ctx context.Context, method, base, path, contentType string, body io.Reader) (*http.Response, error) {
	if base == "" {
		base = a.url
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, body)
	if err != nil {
		return nil, fmt.Errorf("--agent %q: %w", base, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key := a.apiKey(); key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the agent at %s: %w (is `hearth agent` running there?)", base, err)
	}
	return resp, nil
}

// call sends in (when not nil) as JSON and returns a 2xx answer for the caller to read;
// any other status is an error quoting the agent's own message.
func (a *agentAPI) call(ctx context.Context, method, base, path string, in any) (*http.Response, error) {
	var body io.Reader
	contentType := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	resp, err := a.do(ctx, method, base, path, contentType, body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, a.answerError(base, resp.Status, b)
	}
	return resp, nil
}

// callJSON is call that decodes the answer into out (when not nil).
func (a *agentAPI) callJSON(ctx context.Context, method, base, path string, in, out any) error {
	resp, err := a.call(ctx, method, base, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", a.where(base), err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s sent an unexpected answer to %s %s: %w", a.where(base), method, path, err)
	}
	return nil
}

// answerError says what the agent at base answered: its message (errorMessage). status is
// resp.Status ("404 Not Found"); a caller that branches on it finds it with errors.As.
func (a *agentAPI) answerError(base, status string, body []byte) error {
	code, _ := strconv.Atoi(strings.SplitN(status, " ", 2)[0])
	return &statusError{status: code, msg: fmt.Sprintf("%s answered %s: %s", a.where(base), status, errorMessage(body))}
}

// statusError is an agent's answer other than 2xx.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// errorMessage is the message of an error answer from hearth ({"error": "..."} or OpenAI's
// {"error": {"message": "..."}}), else the body itself.
func errorMessage(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		var s string
		var o struct {
			Message string `json:"message"`
		}
		switch {
		case json.Unmarshal(e.Error, &s) == nil && s != "":
			return s
		case json.Unmarshal(e.Error, &o) == nil && o.Message != "":
			return o.Message
		}
	}
	return strings.TrimSpace(string(body))
}

func (a *agentAPI) where(base string) string {
	if base == "" {
		base = a.url
	}
	return "the agent at " + base
}

// cluster fetches the cluster view (GET /hearth/v1/cluster) from the --agent URL.
func (a *agentAPI) cluster(ctx context.Context) (router.ClusterView, error) {
	var view router.ClusterView
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := a.callJSON(ctx, http.MethodGet, "", "/hearth/v1/cluster", nil, &view)
	return view, err
}
