// Package natstest starts a fresh embedded nats-server for one test.
package natstest

import (
	"testing"

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
