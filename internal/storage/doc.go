// Package storage is what an agent knows about its model store (storage.models_dir, Ollama's
// OLLAMA_MODELS, usually on a NAS over NFS): whether it is a mounted network filesystem (read
// from /proc/self/mountinfo), whether it answers (a stat with a deadline, since a stale NFS
// handle hangs for ever), and which models are on it (Ollama's manifests on disk). The agent
// and `hearth models` import it; it imports nothing of hearth's.
package storage
