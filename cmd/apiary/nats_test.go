package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	natsd "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/storage/milvus"
)

// securedNATS starts a nats-server (JetStream, operator mode) that demands
// TLS with a client certificate signed by the returned CA and a user's
// credentials: it returns its URL and the path of a valid .creds file.
func securedNATS(t *testing.T, ca *testutil.CA) (url, credsFile string) {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	require.NoError(t, err)
	opub, err := okp.PublicKey()
	require.NoError(t, err)
	oc := jwt.NewOperatorClaims(opub)

	account := func(js bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		require.NoError(t, err)
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		ac := jwt.NewAccountClaims(pub)
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		claim, err := ac.Encode(okp)
		require.NoError(t, err)
		return kp, pub, claim
	}
	_, sysPub, sysJWT := account(false)
	akp, appPub, appJWT := account(true)
	resolver := &natsd.MemAccResolver{}
	require.NoError(t, resolver.Store(sysPub, sysJWT))
	require.NoError(t, resolver.Store(appPub, appJWT))

	ukp, err := nkeys.CreateUser()
	require.NoError(t, err)
	upub, err := ukp.PublicKey()
	require.NoError(t, err)
	userJWT, err := jwt.NewUserClaims(upub).Encode(akp)
	require.NoError(t, err)
	seed, err := ukp.Seed()
	require.NoError(t, err)
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	require.NoError(t, err)
	credsFile = filepath.Join(t.TempDir(), "apiary.creds")
	require.NoError(t, os.WriteFile(credsFile, creds, 0o600))

	srv, err := natsd.NewServer(&natsd.Options{
		Host: "127.0.0.1", Port: natsd.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver, SystemAccount: sysPub,
		TLS: true, TLSVerify: true, TLSConfig: ca.ServerTLS(t, true), TLSTimeout: 5,
	})
	require.NoError(t, err)
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	require.True(t, srv.ReadyForConnections(20*time.Second), "nats-server never became ready")
	return fmt.Sprintf("tls://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port), credsFile
}

// TestNATSTLSAndCredentials: --nats-ca, --nats-cert/--nats-key and
// --nats-creds reach a nats-server that demands TLS, a client certificate
// and a user's credentials, and the record store opens over it; leaving out
// any one of them is refused.
func TestNATSTLSAndCredentials(t *testing.T) {
	ca := testutil.NewCA(t)
	url, creds := securedNATS(t, ca)
	cert, key := ca.Client(t, "apiary")
	otherCA := testutil.NewCA(t)
	strangerCert, strangerKey := otherCA.Client(t, "stranger")

	open := func(c NATSConfig) error {
		cfg := Config{DataDir: t.TempDir(), NATS: c}
		a := bareApp(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer a.lc.stopAll()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return a.openRecords(ctx)
	}
	all := NATSConfig{URL: url, Creds: creds, CA: ca.File, Cert: cert, Key: key, Replicas: 1}
	require.NoError(t, open(all))

	for name, c := range map[string]NATSConfig{
		"no credentials":                  {URL: url, CA: ca.File, Cert: cert, Key: key, Replicas: 1},
		"no client certificate":           {URL: url, Creds: creds, CA: ca.File, Replicas: 1},
		"a stranger's client certificate": {URL: url, Creds: creds, CA: ca.File, Cert: strangerCert, Key: strangerKey, Replicas: 1},
		"the server's CA untrusted":       {URL: url, Creds: creds, Cert: cert, Key: key, Replicas: 1},
	} {
		t.Run(name, func(t *testing.T) {
			err := open(c)
			require.Error(t, err)
			require.Contains(t, err.Error(), "connect to nats")
		})
	}
}

// TestMilvusAccessFlags: the Milvus TLS, client certificate and user flags
// and APIARY_MILVUS_PASSWORD reach the store's configuration; the password
// is never printed.
func TestMilvusAccessFlags(t *testing.T) {
	t.Setenv("APIARY_MILVUS_PASSWORD", "milvus-canary-password")
	var cfg Config
	fs, envErr := flagSet(roleServe, &cfg)
	require.NoError(t, envErr)
	require.NoError(t, fs.Parse([]string{"--vectors", "milvus", "--milvus-addr", "milvus:19530", "--milvus-ca", "ca.pem",
		"--milvus-cert", "c.pem", "--milvus-key", "k.pem", "--milvus-username", "apiary", "--embedder", "local"}))
	require.NoError(t, cfg.Validate(roleServe))
	m := cfg.Vectors.Milvus.config(milvus.Config{Addr: cfg.Vectors.MilvusAddr})
	require.Equal(t, milvus.Config{Addr: "milvus:19530", CA: "ca.pem", Cert: "c.pem", Key: "k.pem", Username: "apiary", Password: "milvus-canary-password"}, m)
	require.NotContains(t, fmt.Sprintf("%v %+v %#v", cfg, cfg, m), "milvus-canary-password")

	require.NoError(t, fs.Parse([]string{"--milvus-key", ""}))
	require.ErrorContains(t, cfg.Validate(roleServe), "--milvus-cert and --milvus-key go together")
}
