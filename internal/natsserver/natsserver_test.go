package natsserver_test

import (
	"net"
	"net/url"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver"
)

// The embedded default opens no port: no other local process can reach the
// streams and buckets; clients connect inside the process.
func TestEmbeddedOpensNoPort(t *testing.T) {
	t.Parallel()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	require.Nil(t, srv.Addr(), "no client listener")
	require.Empty(t, srv.URL(), "no client URL")

	nc, err := nats.Connect("", nats.InProcessServer(srv))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "b"})
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), "k", []byte("v"))
	require.NoError(t, err, "the in-process connection serves JetStream")
}

// With a port, a client needs the user and password generated at start.
func TestListenerNeedsTheGeneratedCredentials(t *testing.T) {
	t.Parallel()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Listen: true})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	require.NotNil(t, srv.Addr())
	requireAuthenticated(t, srv.URL())

	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err, "the URL carries the credentials")
	nc.Close()

	other, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Listen: true})
	require.NoError(t, err)
	t.Cleanup(other.Shutdown)
	require.NotEqual(t, userinfo(t, srv.URL()), userinfo(t, other.URL()), "each start generates its own")
}

// requireAuthenticated checks that the server at u (a URL with credentials)
// refuses a client that has none, or has a wrong password.
func requireAuthenticated(t *testing.T, u string) {
	t.Helper()
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	user := parsed.User.Username()
	for _, cred := range []*url.Userinfo{nil, url.User(user), url.UserPassword(user, "guess")} {
		parsed.User = cred
		nc, err := nats.Connect(parsed.String())
		if err == nil {
			nc.Close()
		}
		require.ErrorIs(t, err, nats.ErrAuthorization, "credentials %v", cred)
	}
	requireRawRefused(t, parsed.Host)
}

// requireRawRefused checks that a raw TCP client at addr gets nothing past
// CONNECT without credentials: its publish is refused, no PONG comes back.
func requireRawRefused(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("CONNECT {\"verbose\":false}\r\nPUB $KV.tokens.x 1\r\nx\r\nPING\r\n"))
	require.NoError(t, err)
	buf := make([]byte, 4096)
	var got []byte
	for {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	require.Contains(t, string(got), "Authorization Violation")
	require.NotContains(t, string(got), "PONG")
}

func userinfo(t *testing.T, u string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	return parsed.User.String()
}

func TestClusterNeedsASecret(t *testing.T) {
	t.Parallel()
	_, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Cluster: natsserver.Cluster{Name: "c", Port: -1}})
	require.ErrorContains(t, err, "Secret is required")
}

// One store, one server: a second one on the same directory is refused
// until the first has stopped.
func TestStoreIsLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := natsserver.Start(natsserver.Config{StoreDir: dir})
	require.NoError(t, err)
	_, err = natsserver.Start(natsserver.Config{StoreDir: dir})
	require.Equal(t, apiary.KindConflict, apiary.KindOf(err), "%v", err)
	require.ErrorContains(t, err, "in use")
	first.Shutdown()
	again, err := natsserver.Start(natsserver.Config{StoreDir: dir})
	require.NoError(t, err)
	again.Shutdown()
}
