// Package relay is the `hearth relay` role on a VPS: it wires its parts and serves its routes.
// The parts are packages of their own: certs (TLS by ACME with certmagic, or a brought
// certificate), tunnel (the embedded frp server agents connect to), tokens (the token store),
// auth (token, address and admin checks, the sites' sign-in), usage (the usage log and
// quotas), chain (the channel chain: home, then vendors) and translate/anthropic and
// translate/ollama (the dialect translators). The root holds New/Run, the routes by host
// (relay.go), the admin handlers and the routes that go home as they are (home.go).
//
// Only cmd/hearth imports it (and tests: integration, e2e; the benchmarks that start a relay);
// its parts never import it, nor router.
package relay
