// Package rag will answer questions over home documents: extract, chunk, index (keywords and
// vectors), hybrid search and answer. It must never import agent or relay.
package rag
