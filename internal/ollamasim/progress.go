package ollamasim

import (
	"cmp"
	"net/http"
)

// progressMsg is Ollama's api.ProgressResponse.
type progressMsg struct {
	Status    string `json:"status"`
	Digest    string `json:"digest,omitempty"`
	Total     int64  `json:"total,omitempty"`
	Completed int64  `json:"completed,omitempty"`
}

// errPullMissing is what Ollama's pull says when the registry has no such model.
const errPullMissing = "pull model manifest: file does not exist"

// progress answers a pull or create: NDJSON progress lines ending in an {"error"} line on
// failure, or with "stream": false only the last status (or the error, status 500 unless
// given). An error before any progress line is a plain JSON error even when streaming.
func (x *exchange) progress(stream bool, msgs []progressMsg, errMsg string, errStatus int) {
	errStatus = cmp.Or(errStatus, http.StatusInternalServerError)
	if !stream || len(msgs) == 0 {
		if errMsg != "" {
			x.respond(errStatus, ctJSON, ollamaError(errMsg))
			return
		}
		x.respond(0, ctJSON, marshalGin(msgs[len(msgs)-1]))
		return
	}
	x.startStream(ctNDJSON)
	for i, m := range msgs {
		final := i == len(msgs)-1 && errMsg == ""
		if err := x.chunk(append(marshalGin(m), '\n'), final); err != nil {
			return
		}
	}
	if errMsg != "" {
		_ = x.chunk(append(ollamaError(errMsg), '\n'), true)
	}
}

func (s *Server) handlePull(x *exchange) {
	type PullRequest struct {
		Model    string `json:"model"`
		Name     string `json:"name"`
		Insecure bool   `json:"insecure"`
		Stream   *bool  `json:"stream"`
	}
	var req PullRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	n, ok := parseName(cmp.Or(req.Model, req.Name))
	if !ok {
		x.fail(http.StatusBadRequest, "invalid model name")
		return
	}
	stream := req.Stream == nil || *req.Stream
	msgs := []progressMsg{{Status: "pulling manifest"}}
	m, known := s.lookup(n.key)
	if !known {
		x.progress(stream, msgs, errPullMissing, 0)
		return
	}
	d := digestOf(m)
	msgs = append(msgs,
		progressMsg{Status: "pulling " + d[:12], Digest: "sha256:" + d, Total: m.Size},
		progressMsg{Status: "pulling " + d[:12], Digest: "sha256:" + d, Total: m.Size, Completed: m.Size},
		progressMsg{Status: "verifying sha256 digest"},
		progressMsg{Status: "writing manifest"},
		progressMsg{Status: "success"},
	)
	x.progress(stream, msgs, "", 0)
}

func (s *Server) handleCreate(x *exchange) {
	type CreateRequest struct {
		Model  string            `json:"model"`
		Name   string            `json:"name"`
		From   string            `json:"from"`
		Files  map[string]string `json:"files"`
		Stream *bool             `json:"stream"`
	}
	var req CreateRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	n, ok := parseName(cmp.Or(req.Model, req.Name))
	if !ok {
		x.fail(http.StatusBadRequest, "invalid model name")
		return
	}
	stream := req.Stream == nil || *req.Stream
	switch {
	case req.From != "":
		from, ok := parseName(req.From)
		if !ok {
			x.progress(stream, nil, "invalid model name", http.StatusBadRequest)
			return
		}
		src, known := s.lookup(from.key)
		if !known {
			x.progress(stream, []progressMsg{{Status: "pulling manifest"}}, errPullMissing, 0)
			return
		}
		s.copyModel(src.Name, n)
		x.progress(stream, []progressMsg{
			{Status: "using existing layer sha256:" + digestOf(src)},
			{Status: "writing manifest"},
			{Status: "success"},
		}, "", 0)
	case len(req.Files) > 0:
		var msgs []progressMsg
		for _, digest := range req.Files {
			msgs = append(msgs, progressMsg{Status: "using existing layer " + digest})
		}
		s.AddModel(Model{Name: n.display})
		x.progress(stream, append(msgs, progressMsg{Status: "writing manifest"}, progressMsg{Status: "success"}), "", 0)
	default:
		x.progress(stream, nil, "neither 'from' or 'files' was specified", http.StatusBadRequest)
	}
}
