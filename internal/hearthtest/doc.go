// Package hearthtest is the kit hearth's tests share: one way to wait for a condition
// (Eventually), one locked log buffer (Logs), a clock tests move (Clock), one way to run a
// component for a test and stop it on cleanup (Run), goroutine-leak checks for a test
// (CheckGoroutines) and for a whole package (Main, from TestMain), a fake OpenAI-compatible
// vendor beside internal/ollamasim (Vendor), and the signature the ollama CLI sends
// (SignLikeOllama). Only tests import it; it imports no role package, so every package's
// tests may use it.
package hearthtest
