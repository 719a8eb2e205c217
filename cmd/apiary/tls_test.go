package main

import (
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/internal/testutil"
)

// TestServeTLS serves the API over HTTPS: a client that trusts the
// certificate gets answers, plain HTTP and TLS 1.1 do not.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	certFile, keyFile := ca.Server(t, "apiary")
	pool := ca.Pool
	token, err := api.NewToken()
	require.NoError(t, err)
	addr := freeAddr(t)
	var stderr testutil.Buffer
	cmd := exec.Command(apiaryBin, "serve", "--data-dir", filepath.Join(dir, "data"), "--addr", addr, "--tls-cert", certFile, "--tls-key", keyFile, "--embedder", "local")
	cmd.Env = append(os.Environ(), "APIARY_BOOTSTRAP_TOKEN="+token)
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() })

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	require.Eventually(t, func() bool {
		resp, err := client.Get("https://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "no HTTPS answer:\n%s", stderr.String())

	req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/v1/jobs", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, err = http.Get("http://" + addr + "/readyz")
	if err == nil {
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP is not served")
	}
	old := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	_, err = old.Get("https://" + addr + "/readyz")
	require.Error(t, err, "TLS 1.1 is refused")
}
