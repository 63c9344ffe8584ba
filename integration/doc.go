// Package integration holds the tests that run more than one role in one process: a relay
// and agents on 127.0.0.1, joined by the real frp tunnel and a real ACME certificate from
// Pebble, with ollamasim and fake vendors behind them. Tests that need only one role live
// beside its code. Nothing imports this package.
package integration
