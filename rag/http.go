package rag

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/router"
)

// maxJSONBody bounds the JSON bodies of the RAG API.
const maxJSONBody = 4 << 20

// API is the RAG HTTP API, mounted by the agent on /rag/v1 behind its API key check:
//
//	GET    /collections                       list
//	POST   /collections                       create {name, paths, include, exclude}
//	GET    /collections/{c}                   one
//	DELETE /collections/{c}                   delete (hearth's indexes, never the files)
//	POST   /collections/{c}/sync              re-sync from its folders (NDJSON progress)
//	POST   /collections/{c}/reindex           re-embed with rag.embed_model (NDJSON progress)
//	GET    /collections/{c}/documents         list
//	POST   /collections/{c}/documents         upload (multipart, field "file", one or more)
//	DELETE /collections/{c}/documents/{id}    delete one
//	POST   /collections/{c}/query             search {query, mode, top_k, source, meta}
//	POST   /collections/{c}/chat              answer (SSE: sources, token, done, error)
type API struct {
	Store    *Store
	Answerer *Answerer
}

// Handler routes the API; paths are relative to its mount point.
func (a *API) Handler() http.Handler {
	r := chi.NewRouter()
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		router.WriteError(w, router.Ollama, &router.APIError{Status: http.StatusNotFound, Code: "not_found",
			Message: fmt.Sprintf("no such endpoint: %s %s (see /rag/v1/collections)", r.Method, r.URL.Path)})
	})
	r.Get("/collections", a.list)
	r.Post("/collections", a.create)
	r.Route("/collections/{c}", func(r chi.Router) {
		r.Get("/", a.one)
		r.Delete("/", a.remove)
		r.Post("/sync", a.sync)
		r.Post("/reindex", a.sync)
		r.Get("/documents", a.documents)
		r.Post("/documents", a.upload)
		r.Delete("/documents/{id}", a.deleteDocument)
		r.Post("/query", a.query)
		r.Post("/chat", a.chat)
	})
	return r
}

func fail(w http.ResponseWriter, err error) { router.WriteError(w, router.Ollama, ErrorFor(err)) }

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, fmt.Errorf("%w: request body: %v", ErrBadQuery, err))
		return false
	}
	return true
}

func (a *API) collection(w http.ResponseWriter, r *http.Request) (*Collection, bool) {
	c, err := a.Store.Collection(chi.URLParam(r, "c"))
	if err != nil {
		fail(w, err)
		return nil, false
	}
	return c, true
}

func (a *API) list(w http.ResponseWriter, _ *http.Request) {
	infos := a.Store.List()
	if infos == nil {
		infos = []Info{}
	}
	writeJSONBody(w, http.StatusOK, map[string]any{"collections": infos})
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	var cc CollectionConfig
	if !decode(w, r, &cc) {
		return
	}
	c, err := a.Store.Create(r.Context(), cc)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSONBody(w, http.StatusCreated, c.Info())
}

func (a *API) one(w http.ResponseWriter, r *http.Request) {
	if c, ok := a.collection(w, r); ok {
		writeJSONBody(w, http.StatusOK, c.Info())
	}
}

func (a *API) remove(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "c")
	if err := a.Store.Remove(name); err != nil {
		fail(w, err)
		return
	}
	writeJSONBody(w, http.StatusOK, map[string]any{"deleted": name})
}

// sync streams NDJSON: {"progress":{...}} per step, then {"report":{...}} or {"error":"..."}.
// A client that goes away cancels it.
func (a *API) sync(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "c")
	if _, ok := a.collection(w, r); !ok {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	progress := func(p Progress) {
		_ = enc.Encode(map[string]any{"progress": p})
		if flusher != nil {
			flusher.Flush()
		}
	}
	run := a.Store.Sync
	if strings.HasSuffix(r.URL.Path, "/reindex") {
		run = a.Store.Reindex
	}
	rep, err := run(r.Context(), name, progress)
	if err != nil {
		_ = enc.Encode(map[string]any{"error": ErrorFor(err).Message, "report": rep})
		return
	}
	_ = enc.Encode(map[string]any{"report": rep})
}

func (a *API) documents(w http.ResponseWriter, r *http.Request) {
	if c, ok := a.collection(w, r); ok {
		writeJSONBody(w, http.StatusOK, map[string]any{"documents": c.Documents()})
	}
}

func (a *API) deleteDocument(w http.ResponseWriter, r *http.Request) {
	c, ok := a.collection(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	for _, d := range c.Documents() {
		if d.ID == id || d.Source == id {
			if _, err := c.Delete(r.Context(), d.Source); err != nil {
				fail(w, err)
				return
			}
			writeJSONBody(w, http.StatusOK, map[string]any{"deleted": d.Source, "chunks": len(d.Chunks)})
			return
		}
	}
	router.WriteError(w, router.Ollama, &router.APIError{Status: http.StatusNotFound, Code: "not_found",
		Message: fmt.Sprintf("collection %s has no document %q (GET .../documents lists them)", c.Name(), id)})
}

// upload reads the multipart body part by part, never more than rag.max_file_size of a part:
// a 2 GB upload is refused after max_file_size bytes, not buffered.
func (a *API) upload(w http.ResponseWriter, r *http.Request) {
	c, ok := a.collection(w, r)
	if !ok {
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		fail(w, fmt.Errorf("%w: send the files as multipart/form-data in a field named \"file\": %v", ErrBadQuery, err))
		return
	}
	var results []PutResult
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail(w, fmt.Errorf("%w: reading the upload: %v", ErrBadQuery, err))
			return
		}
		if part.FormName() != "file" {
			part.Close()
			continue
		}
		res, err := a.uploadPart(r, c, part)
		if err != nil {
			// Not part.Close(): it would read the rest of a 2 GB part to find its end.
			w.Header().Set("Connection", "close")
			fail(w, err)
			return
		}
		part.Close()
		results = append(results, res)
	}
	if len(results) == 0 {
		fail(w, fmt.Errorf("%w: the upload has no part named \"file\"", ErrBadQuery))
		return
	}
	status := http.StatusOK
	if len(results) == 1 && results[0].Outcome == Skipped {
		status = http.StatusUnprocessableEntity
	}
	body := map[string]any{"results": results}
	if status != http.StatusOK {
		body["error"] = fmt.Sprintf("%s was not indexed: %s", results[0].Source, results[0].Reason)
	}
	writeJSONBody(w, status, body)
}

func (a *API) uploadPart(r *http.Request, c *Collection, part *multipart.Part) (PutResult, error) {
	// part.FileName() cuts a path down to its base name; a name with a path is refused instead.
	_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	name := params["filename"]
	if err := validUploadName(name); err != nil {
		return PutResult{}, err
	}
	limit := a.Store.cfg.MaxFileSize
	data, err := io.ReadAll(io.LimitReader(part, limit+1))
	if err != nil {
		return PutResult{}, fmt.Errorf("%w: reading %s: %v", ErrBadQuery, name, err)
	}
	if int64(len(data)) > limit {
		return PutResult{}, fmt.Errorf("%w: %s is over rag.max_file_size (%d bytes)", ErrTooLarge, name, limit)
	}
	return a.Store.Upload(r.Context(), c.Name(), name, data)
}

func (a *API) query(w http.ResponseWriter, r *http.Request) {
	c, ok := a.collection(w, r)
	if !ok {
		return
	}
	var q Query
	if !decode(w, r, &q) {
		return
	}
	ans, err := c.Search(r.Context(), q)
	if err != nil {
		fail(w, err)
		return
	}
	if ans.Results == nil {
		ans.Results = []Result{}
	}
	writeJSONBody(w, http.StatusOK, ans)
}

// chatRequest is POST .../chat: a question, or a whole conversation.
type chatRequest struct {
	Query    string         `json:"query"`
	Messages []Message      `json:"messages"`
	Mode     string         `json:"mode"`
	TopK     int            `json:"top_k"`
	Options  map[string]any `json:"options"`
}

// chat streams server-sent events: "sources" (the numbered sources), "token" ({"text"}),
// then "done" (the Final, with cited flags) or "error" ({"error"}).
func (a *API) chat(w http.ResponseWriter, r *http.Request) {
	c, ok := a.collection(w, r)
	if !ok {
		return
	}
	var req chatRequest
	if !decode(w, r, &req) {
		return
	}
	msgs := req.Messages
	if strings.TrimSpace(req.Query) != "" {
		msgs = append(msgs, Message{Role: "user", Content: req.Query})
	}
	started := false
	flusher, _ := w.(http.Flusher)
	event := func(name string, v any) error {
		if !started {
			started = true
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
		}
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	fin, err := a.Answerer.Answer(r.Context(), AnswerRequest{Collection: c.Name(), Messages: msgs, Options: req.Options, Mode: req.Mode, TopK: req.TopK},
		func(s []Source) error {
			if s == nil {
				s = []Source{}
			}
			return event("sources", map[string]any{"sources": s})
		},
		func(tok string) error { return event("token", map[string]any{"text": tok}) })
	if err != nil {
		if !started {
			fail(w, err)
			return
		}
		_ = event("error", map[string]any{"error": ErrorFor(err).Message})
		return
	}
	if note := fin.LeftOutNote(); note != "" {
		_ = event("token", map[string]any{"text": note})
	}
	_ = event("done", fin)
}
