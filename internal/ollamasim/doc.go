// Package ollamasim is a fake Ollama server.
package ollamasim
