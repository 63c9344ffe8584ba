// Package tunnelmeta names what an agent's frp proxies say about themselves (their frp
// metadatas), which the relay's tunnel server reads to route to them: the one vocabulary of
// agent and relay. It imports nothing.
package tunnelmeta

// Metadata keys of an agent's frp login and proxies.
const (
	// Kind is "home" (the API, KindHome) or "site" (an exposed web app, KindSite).
	Kind = "hearth_kind"
	// Channel is the agent's tunnel.name.
	Channel = "hearth_channel"
	// Name is a site's tunnel.expose[].name.
	Name = "hearth_name"
	// Host is a site's tunnel.expose[].host.
	Host = "hearth_host"
	// Auth is a site's tunnel.expose[].auth: "token" or "none".
	Auth = "hearth_auth"
)

// Values of Kind.
const (
	KindHome = "home"
	KindSite = "site"
)
