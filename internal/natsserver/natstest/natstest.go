// Package natstest starts a fresh embedded nats-server for one test.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary/internal/natsserver"
)

// Start runs a nats-server with JetStream on a free loopback port, stored in
// t.TempDir(), and shuts it down when the test ends. It returns the client
// URL, which carries the user and password generated for this server.
func Start(tb testing.TB) string {
	tb.Helper()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: tb.TempDir(), Listen: true})
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

// IgnoreLeaks are the goleak options of every package whose tests talk to
// NATS. nats.go's JetStream publisher starts a goroutine that watches the
// connection's status; when the connection closes while that goroutine is
// starting, it can wait on a nil channel forever (an upstream race in
// jetstream.(*jetStream).resetPendingAcksOnReconnect). It holds nothing of
// ours, so it is the one goroutine the leak checks let through.
func IgnoreLeaks() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"),
	}
}
