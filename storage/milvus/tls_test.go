package milvus

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/storage"
)

// tlsProxy ends TLS (demanding a client certificate of ca) in front of the
// Milvus at backend, as a TLS-terminating sidecar or a managed Milvus
// would: it returns its address and a count of the connections whose
// client presented a verified certificate.
func tlsProxy(t *testing.T, ca *testutil.CA, backend string) (string, *atomic.Int64) {
	t.Helper()
	cfg := ca.ServerTLS(t, true)
	cfg.NextProtos = []string{"h2"} // gRPC insists on ALPN h2
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	var verified atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	track := func(c net.Conn) { mu.Lock(); open = append(open, c); mu.Unlock() }
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					_ = c.Close()
					return
				}
				if len(tc.ConnectionState().VerifiedChains) > 0 {
					verified.Add(1)
				}
				b, err := net.Dial("tcp", backend)
				if err != nil {
					_ = c.Close()
					return
				}
				track(b)
				done := make(chan struct{}, 2)
				pipe := func(dst, src net.Conn) { _, _ = io.Copy(dst, src); _ = dst.Close(); done <- struct{}{} }
				go pipe(b, c)
				go pipe(c, b)
				<-done
				<-done
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), &verified
}

// TestTLSAndClientCertificate: with CA, Cert and Key the store works
// through a TLS endpoint that demands a client certificate; without the
// certificate, or without trusting the server's CA, Open fails.
func TestTLSAndClientCertificate(t *testing.T) {
	cfg := testConfig(t)
	ca := testutil.NewCA(t)
	addr, verified := tlsProxy(t, ca, cfg.Addr)
	cert, key := ca.Client(t, "apiary")

	secured := cfg
	secured.Addr, secured.CA, secured.Cert, secured.Key = addr, ca.File, cert, key
	s := openWith(t, secured)
	ctx := context.Background()
	const acc = apiary.AccountID("acc-tls")
	r := rec(acc, "doc-tls", 1, 0, vec(2, 0))
	require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{r}))
	hits, err := s.Search(ctx, acc, vec(2, 0), 1, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	require.Equal(t, r.ChunkID, hits[0].ChunkID)
	require.Positive(t, verified.Load(), "no connection presented a verified client certificate")

	for name, c := range map[string]Config{
		"no client certificate":     {CA: ca.File},
		"the server's CA untrusted": {Cert: cert, Key: key},
	} {
		t.Run(name, func(t *testing.T) {
			c.Addr, c.Collection, c.Dim, c.Consistency = addr, cfg.Collection, cfg.Dim, cfg.Consistency
			c.OpenTimeout = 3 * time.Second
			_, err := Open(ctx, c)
			require.Error(t, err)
			require.False(t, errors.Is(err, apiary.ErrInvalid), "%v", err)
		})
	}

	// A half-given client certificate is a configuration error.
	_, err = Open(ctx, Config{Addr: addr, Dim: testDim, Cert: cert})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
}
