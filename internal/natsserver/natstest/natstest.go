// Package natstest starts a fresh embedded nats-server for one test.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiaryhq/apiary/internal/natsserver"
)

// Start runs a nats-server with JetStream on a free loopback port, stored in
// t.TempDir(), and shuts it down when the test ends. It returns the client URL.
func Start(tb testing.TB) string {
	tb.Helper()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start nats-server: %v", err)
	}
	tb.Cleanup(srv.Shutdown)
	return srv.URL()
}

// Connect starts a server as Start does and returns a connection to it and
// its JetStream context; the connection closes when the test ends.
func Connect(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(Start(tb))
	if err != nil {
		tb.Fatalf("connect to nats-server: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return nc, js
}
