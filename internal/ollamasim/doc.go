// Package ollamasim is a fake Ollama server for tests and benchmarks.
//
// It answers Ollama's native API (/api/chat, /api/generate, /api/embed, /api/tags, /api/ps,
// /api/pull, …) and Ollama's OpenAI-compatible API (/v1/chat/completions, /v1/completions,
// /v1/embeddings, /v1/models) with the bytes Ollama v0.17.4 sends: the same field names and
// order, content types, status codes and error bodies, checked against a running Ollama, so
// that Ollama's Go client, go-openai and the openai npm package parse its answers. Generated
// text is deterministic ("tok0 tok1 …") and embeddings are a hash of the text (see Embedding).
//
// Around the wire format it simulates what a router in front of Ollama has to cope with:
// a limited number of parallel slots with a FIFO queue and Ollama's 503 when the queue is
// full, cold loads that concurrent requests share, keep-alive unloading, a cap on loaded
// models with LRU eviction, per-token delays, and injected faults (refused connections, 500s,
// hangs, streams cut mid-way). Stats and Requests expose what happened.
//
// Only tests, benchmarks and test harnesses import this package; production code must not.
//
// With zero TokenDelay the streaming path builds each chunk with append-style encoders into
// a reused buffer and takes no lock while writing, so the sim can serve as the "direct"
// baseline in proxy-overhead benchmarks.
package ollamasim
