package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/rag"
	"github.com/hearthlab/hearth/router"
	"github.com/hearthlab/hearth/router/cluster"
)

// ragParts is the RAG store of this agent, its API on /rag/v1 and the rag:<collection>
// models. Embeddings and chats go to this agent's own API (through its router), with a key
// made at start that never leaves the process.
type ragParts struct {
	store   *rag.Store
	virtual *clusterVirtual
	api     http.Handler
	key     string
	rescan  time.Duration
	log     *slog.Logger
}

func newRAG(cfg config.Agent, apiAddr string, logger *slog.Logger) (*ragParts, error) {
	r := cfg.Rag
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("agent: rag key: %w", err)
	}
	key := "hearth-rag-" + hex.EncodeToString(b)
	client := &rag.Client{Base: "http://" + apiAddr, Key: key, HTTP: &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}}}
	var cols []rag.CollectionConfig
	for _, c := range r.Collections {
		cols = append(cols, rag.CollectionConfig{Name: c.Name, Paths: c.Paths, Include: c.Include, Exclude: c.Exclude,
			Chunk: rag.ChunkOptions{Size: c.ChunkSize, Overlap: c.ChunkOverlap}})
		if c.ChunkSize == 0 {
			cols[len(cols)-1].Chunk = rag.ChunkOptions{}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store, err := rag.Open(ctx, rag.Config{
		Dir:         r.DirFor(cfg.Node.DataDir),
		EmbedModel:  r.EmbedModel,
		MaxFileSize: int64(r.MaxFileSize),
		Chunk:       rag.ChunkOptions{Size: r.ChunkSize, Overlap: r.ChunkOverlap},
		Embed:       rag.EmbedOptions{Batch: r.EmbedBatch, Concurrency: r.EmbedConcurrency},
		Collections: cols,
		PDFium:      r.PDFEngine == "pdfium",
		Watch:       r.Watch,
	}, client, logger)
	if err != nil {
		return nil, fmt.Errorf("agent: rag: %w", err)
	}
	answerer := &rag.Answerer{Store: store, Chat: client, Model: r.ChatModel, NumCtx: r.NumCtx, TopK: r.TopK}
	return &ragParts{
		store:   store,
		virtual: &clusterVirtual{local: &rag.Virtual{Answerer: answerer}, client: client.HTTP},
		api:     (&rag.API{Store: store, Answerer: answerer}).Handler(),
		key:     key,
		rescan:  r.RescanInterval,
		log:     logger,
	}, nil
}

// joinCluster lets rag:<collection> reach the collections of other agents.
func (p *ragParts) joinCluster(m *cluster.Membership, self, credential string) {
	header := http.Header{router.ForwardedHeader: {self}}
	if credential != "" {
		header.Set("Authorization", "Bearer "+credential)
	}
	p.virtual.peers = m.Peers
	p.virtual.header = header
}

// run keeps folder-bound collections in sync until ctx ends.
func (p *ragParts) run(ctx context.Context) {
	if err := p.store.Run(ctx, p.rescan); err != nil {
		p.log.Error("rag sync stopped", "err", err)
	}
}

func (p *ragParts) close() { p.store.Close() }
