package agent

import "syscall"

// childAttr puts a child in its own process group (so that what it starts is stopped with
// it) and has the kernel signal it when the agent dies, so that a crashed agent leaves no
// Ollama holding the port and no inhibitor holding the machine awake. The signal is SIGTERM,
// not SIGKILL: `ollama serve` stops its runners on SIGTERM (server.Serve: unloadAllRunners),
// while a killed serve leaves its runner, which holds the loaded model (GPU memory on a real
// machine), running under init; the agent's own stop kills the group after a grace.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
