// Package modelname is how hearth reads model names and model globs, shared by the router
// (agents) and the relay: "llama3", "Llama3" and "llama3:latest" are one model, as Ollama
// treats them, and a glob's '*' spans the slashes of names such as "hf.co/org/model:q4". It
// imports nothing of hearth.
package modelname

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Normalize gives a model name its canonical form: lower case with an explicit tag.
func Normalize(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return ""
	}
	if strings.LastIndexByte(name, ':') <= strings.LastIndexByte(name, '/') {
		name += ":latest"
	}
	return name
}

// Match says whether a channel's or route's model glob matches model. Globs match like
// path.Match, except that '*' also matches '/'. The name matches as the client wrote it
// (vendor names such as "Qwen/Qwen3-8B" keep their case) or as Normalize reads it, against a
// glob read the same way ("qwen3" is "qwen3:latest", so it matches "qwen3:*").
func Match(glob, model string) bool {
	if glob == model || SlashMatch(glob, model) {
		return true
	}
	g := strings.ToLower(strings.TrimSpace(glob))
	if !strings.ContainsAny(g, "*?[") {
		g = Normalize(g)
	}
	return SlashMatch(g, Normalize(model))
}

// MatchAny says whether one of globs matches model (see Match).
func MatchAny(globs []string, model string) bool {
	for _, g := range globs {
		if Match(g, model) {
			return true
		}
	}
	return false
}

// SlashMatch is path.Match with '/' an ordinary character, so that '*' spans it. A malformed
// glob matches nothing.
func SlashMatch(glob, name string) bool {
	ok, _ := path.Match(strings.ReplaceAll(glob, "/", "\x00"), strings.ReplaceAll(name, "/", "\x00"))
	return ok
}

// NormalizeGlobs lower-cases model globs, gives a bare name the ":latest" tag (as Normalize
// does for the model a request names), drops empty and repeated ones, and refuses a malformed
// one with what to write instead.
func NormalizeGlobs(in []string) ([]string, error) {
	out := []string{}
	for _, g := range in {
		g = strings.ToLower(strings.TrimSpace(g))
		if g == "" {
			continue
		}
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("model glob %q: %v (use * and ? as in \"qwen3:*\")", g, err)
		}
		if !strings.ContainsAny(g, "*?[") {
			g = Normalize(g)
		}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out, nil
}
