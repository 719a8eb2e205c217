package safehttp_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/safehttp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url          string
		ok           bool // allowed without allowPrivate
		okIfPrivate  bool // allowed with allowPrivate
		wantContains string
	}{
		{"https://example.com/hook", true, true, ""},
		{"http://example.com:8080/hook?x=1", true, true, ""},
		{"https://93.184.216.34/hook", true, true, ""},
		{"https://[2606:2800:220:1:248:1893:25c8:1946]/", true, true, ""},
		{"ftp://example.com/", false, false, "https://"},
		{"file:///etc/passwd", false, false, "https://"},
		{"gopher://127.0.0.1/", false, false, "https://"},
		{"//example.com/hook", false, false, "https://"},
		{"https://user:pw@example.com/", false, false, "user name"},
		{"https://example.com:0/", false, false, "port"},
		{"https://example.com:99999/", false, false, "port"},
		{"http://127.0.0.1/", false, true, "loopback"},
		{"http://127.0.0.1:9/", false, true, "loopback"},
		{"http://10.0.0.1/", false, true, "private"},
		{"http://172.16.3.4/", false, true, "private"},
		{"http://192.168.1.1/", false, true, "private"},
		{"http://169.254.169.254/latest/meta-data/", false, false, "metadata"},
		{"http://169.254.10.1/", false, true, "link-local"},
		{"http://100.64.0.1/", false, true, "CGNAT"},
		{"http://0.0.0.0/", false, false, "unspecified"},
		{"http://0.1.2.3/", false, false, "0.0.0.0/8"},
		{"http://224.0.0.1/", false, false, "multicast"},
		{"http://255.255.255.255/", false, false, "reserved"},
		{"http://[::1]/", false, true, "loopback"},
		{"http://[::]/", false, false, "unspecified"},
		{"http://[fc00::1]/", false, true, "private"},
		{"http://[fd12:3456::1]/", false, true, "private"},
		{"http://[fe80::1]/", false, true, "link-local"},
		{"http://[fd00:ec2::254]/", false, false, "metadata"},
		{"http://[::ffff:127.0.0.1]/", false, true, "IPv4-mapped"},
		{"http://[::ffff:93.184.216.34]/", false, true, "IPv4-mapped"},
		{"http://[::ffff:169.254.169.254]/", false, false, "IPv4-mapped"},
		{"http://[64:ff9b::a00:1]/", false, true, "NAT64"},
		{"http://[2002:7f00:1::]/", false, true, "6to4"},
		{"http://[ff02::1]/", false, false, "multicast"},
		// inet_aton forms a resolver accepts.
		{"http://0x7f000001/", false, true, "127.0.0.1"},
		{"http://2130706433/", false, true, "127.0.0.1"},
		{"http://0177.0.0.1/", false, true, "127.0.0.1"},
		{"http://127.1/", false, true, "127.0.0.1"},
		{"http://127.0.1/", false, true, "127.0.0.1"},
		{"http://0x7f.1/", false, true, "127.0.0.1"},
		{"http://012.0.0.1/", false, true, "10.0.0.1"},
		{"http://167772161/", false, true, "10.0.0.1"},
		{"http://0xa9fea9fe/", false, false, "metadata"},
		{"http://127.0.0.1./", false, true, "127.0.0.1"},
		{"http://localhost:8080/", false, true, "loopback name"},
		{"http://LOCALHOST./", false, true, "loopback name"},
		{"http://api.localhost/", false, true, "loopback name"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := safehttp.CheckURL(tt.url, false)
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
				require.Contains(t, err.Error(), tt.wantContains)
			}
			err = safehttp.CheckURL(tt.url, true)
			if tt.okIfPrivate {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func TestParseHost(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]string{
		"127.0.0.1":      "127.0.0.1",
		"0x7f000001":     "127.0.0.1",
		"2130706433":     "127.0.0.1",
		"0177.0.0.1":     "127.0.0.1",
		"127.1":          "127.0.0.1",
		"1.2.3":          "1.2.0.3",
		"0x7F.0X0.0.1":   "127.0.0.1",
		"[::1]":          "::1",
		"::ffff:1.2.3.4": "::ffff:1.2.3.4",
	} {
		ip, ok := safehttp.ParseHost(host)
		require.True(t, ok, host)
		require.Equal(t, want, ip.String(), host)
	}
	for _, host := range []string{"example.com", "1.2.3.4.5", "256.1.1.1", "1.256.1.1", "4294967296", "09.1.1.1", "a1.2.3.4", ""} {
		_, ok := safehttp.ParseHost(host)
		require.False(t, ok, host)
	}
}

// A host name that resolves to a private address passes CheckURL (it is a
// name) but the client refuses to connect to it.
func TestClientRefusesAtDialTime(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	port := u.Port()

	// hooks.example.test "resolves" to the test server's loopback address.
	lookup := func(ctx context.Context, host string) ([]string, error) {
		if host == "hooks.example.test" {
			return []string{"127.0.0.1"}, nil
		}
		return net.DefaultResolver.LookupHost(ctx, host)
	}
	require.NoError(t, safehttp.CheckURL("http://hooks.example.test:"+port+"/", false))

	strict := safehttp.NewClient(safehttp.Config{LookupHost: lookup})
	defer strict.CloseIdleConnections()
	for _, target := range []string{
		"http://hooks.example.test:" + port + "/", // a name resolving to loopback
		"http://localhost:" + port + "/",          // the real resolver
		srv.URL,                                   // the literal
		"http://[::1]:" + port + "/",
		// These never leave the machine: Control refuses before connect.
		"http://10.0.0.1:" + port + "/",
		"http://169.254.169.254/latest/meta-data/",
		"http://0x7f000001:" + port + "/",
	} {
		resp, err := strict.Get(target)
		if resp != nil {
			_ = resp.Body.Close()
		}
		require.Error(t, err, target)
		require.ErrorIs(t, err, safehttp.ErrForbiddenAddress, target)
	}
	require.Zero(t, hits.Load(), "no request reached the server")

	// With allowPrivate, the same name reaches it.
	lenient := safehttp.NewClient(safehttp.Config{AllowPrivate: true, LookupHost: lookup})
	defer lenient.CloseIdleConnections()
	resp, err := lenient.Get("http://hooks.example.test:" + port + "/")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, int32(1), hits.Load())
	// The metadata address stays refused even then.
	_, err = lenient.Get("http://169.254.169.254/")
	require.ErrorIs(t, err, safehttp.ErrForbiddenAddress)
}

func TestClientFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/next", http.StatusFound)
			return
		}
		t.Errorf("redirect followed to %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	c := safehttp.NewClient(safehttp.Config{AllowPrivate: true})
	defer c.CloseIdleConnections()
	resp, err := c.Get(srv.URL + "/start")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
}

func TestCheckIPPolicy(t *testing.T) {
	t.Parallel()
	require.NoError(t, safehttp.CheckIP(netip.MustParseAddr("8.8.8.8"), false))
	err := safehttp.CheckIP(netip.MustParseAddr("127.0.0.1"), false)
	require.ErrorIs(t, err, safehttp.ErrForbiddenAddress)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	require.True(t, strings.Contains(err.Error(), "loopback"))
}

// A refusal at dial time names neither the address a host name resolved to
// nor why it is refused: that would make the client an oracle of internal
// DNS. It says only that the address is refused.
func TestDialRefusalNamesNoAddress(t *testing.T) {
	t.Parallel()
	lookup := func(ctx context.Context, host string) ([]string, error) {
		return []string{"10.11.12.13", "127.0.0.1", "169.254.169.254"}, nil
	}
	c := safehttp.NewClient(safehttp.Config{LookupHost: lookup})
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://hooks.example.test:8080/")
	if resp != nil {
		_ = resp.Body.Close()
	}
	require.ErrorIs(t, err, safehttp.ErrForbiddenAddress)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	var ae *apiary.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "the address is refused", ae.Msg, "the caller-safe message says only that")
	for _, leak := range []string{"10.11.12.13", "127.0.0.1", "169.254.169.254", "private", "loopback", "metadata"} {
		require.NotContains(t, ae.Msg, leak)
	}
}
