// Package relay will be the `hearth relay` role on a VPS: TLS by ACME (certmagic), the frp
// server for tunnels from home, token auth and the vendor channel chain. Only cmd/hearth will
// import it.
package relay
