// Package rag answers questions over home documents: it extracts text from files (text,
// Markdown, HTML, PDF, Word, CSV), chunks it by structure, keeps a keyword index (bleve, BM25)
// and a vector store (chromem-go) per collection, searches both and fuses them by reciprocal
// rank, and builds grounded prompts with numbered sources. Its HTTP API is mounted by the agent
// on /rag/v1; the agent also hands it chats to the virtual models rag:<collection>.
//
// rag talks to models only through the Ollama API of the agent it runs in (Embedder, Chatter),
// so any node of the cluster that has the model serves it. It must never import agent or relay.
package rag
