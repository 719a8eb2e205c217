package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/connectortest"
	"github.com/apiaryhq/apiary/connectors/s3"
)

// motoEndpoint is moto_server's address (scripts/test-services.sh); the
// tests against it skip when it is unset.
func motoEndpoint(t *testing.T) string {
	ep := os.Getenv("APIARY_TEST_S3_ENDPOINT")
	if ep == "" {
		t.Skip("APIARY_TEST_S3_ENDPOINT is unset: run scripts/test-services.sh start")
	}
	return ep
}

var bucketSeq atomic.Int64

// moto is a harness: a fresh bucket on moto_server (or on the Go fake,
// fakeS3, for the runs without it), reached by the
// connector through a proxy that can answer in S3's stead (an expired
// token, SlowDown with Retry-After) and counts the content bytes served
// per object.
type moto struct {
	admin  *awss3.Client // straight to moto, to put and delete objects
	bucket string
	proxy  *httptest.Server
	conn   *s3.Connector

	mu       sync.Mutex
	expired  bool
	limits   []time.Duration
	served   map[string]int64 // by "/bucket/key"
	assumed  []url.Values     // the AssumeRole requests
	denyRole bool             // answer AssumeRole with AccessDenied
	keyIDs   map[string]bool  // the access key ids that signed S3 requests
}

const (
	pageSize = 4
	maxBytes = 64 << 10
)

func newMoto(t *testing.T) *moto { return newHarness(t, motoEndpoint(t)) }

// newHarness makes a harness over the S3 server at ep: moto, or the Go fake.
func newHarness(t *testing.T, ep string) *moto {
	target, err := url.Parse(ep)
	require.NoError(t, err)
	m := &moto{
		bucket: fmt.Sprintf("apiary-test-%d-%d", time.Now().UnixNano(), bucketSeq.Add(1)),
		served: map[string]int64{},
		keyIDs: map[string]bool{},
	}
	m.admin = awss3.New(awss3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(ep),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		// Plain bodies (no aws-chunked trailers), which the Go fake reads.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	})
	_, err = m.admin.CreateBucket(context.Background(), &awss3.CreateBucketInput{Bucket: aws.String(m.bucket)})
	require.NoError(t, err)

	rp := httputil.NewSingleHostReverseProxy(target)
	m.proxy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.intercept(w) || m.sts(w, r) {
			return
		}
		if r.Method == http.MethodGet { // objects at /bucket/key, listings at /bucket
			w = &counting{ResponseWriter: w, m: m, path: r.URL.Path}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(m.proxy.Close)
	m.conn, err = s3.New(s3.Config{
		Endpoint: m.proxy.URL, UsePathStyle: true, AllowPrivate: true,
		PageSize: pageSize, MaxBytes: maxBytes,
	}, s3.Credential{AccessKeyID: "ASIATESTTEMPORARY", SecretAccessKey: "secret-canary", SessionToken: "token-canary"})
	require.NoError(t, err)
	return m
}

// sts records AssumeRole requests, answering AccessDenied when asked to;
// for other requests it records the signing key id and returns false.
func (m *moto) sts(w http.ResponseWriter, r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	if !strings.Contains(auth, "/sts/aws4_request") {
		if _, rest, ok := strings.Cut(auth, "Credential="); ok {
			key, _, _ := strings.Cut(rest, "/")
			m.mu.Lock()
			m.keyIDs[key] = true
			m.mu.Unlock()
		}
		return false
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return true
	}
	form, _ := url.ParseQuery(string(body))
	r.Body = io.NopCloser(bytes.NewReader(body))
	m.mu.Lock()
	defer m.mu.Unlock()
	if form.Get("Action") == "AssumeRole" {
		m.assumed = append(m.assumed, form)
		if m.denyRole {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error><RequestId>1</RequestId></ErrorResponse>`)
			return true
		}
	}
	return false
}

// intercept answers in S3's stead when the test asked for it.
func (m *moto) intercept(w http.ResponseWriter) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.expired:
		s3Error(w, http.StatusBadRequest, "ExpiredToken", "The provided token has expired.", nil)
	case len(m.limits) > 0:
		d := m.limits[0]
		m.limits = m.limits[1:]
		s3Error(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.",
			http.Header{"Retry-After": {strconv.Itoa(int(d / time.Second))}})
	default:
		return false
	}
	return true
}

// s3Error writes S3's documented XML error.
func s3Error(w http.ResponseWriter, status int, code, msg string, h http.Header) {
	for k, v := range h {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>%s</Code><Message>%s</Message><RequestId>4442587FB7D0A2F9</RequestId><HostId>host</HostId></Error>`, code, msg)
}

type counting struct {
	http.ResponseWriter
	m    *moto
	path string
}

func (c *counting) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.m.mu.Lock()
	c.m.served[c.path] += int64(n)
	c.m.mu.Unlock()
	return n, err
}

func (m *moto) Connector() connectors.Connector { return m.conn }
func (m *moto) Source() connectors.Source {
	return connectors.Source{Location: m.bucket + "/docs/", MaxItems: 1000}
}
func (m *moto) PageSize() int   { return pageSize }
func (m *moto) MaxBytes() int64 { return maxBytes }

func (m *moto) Put(t *testing.T, name string, content []byte) string {
	key := "docs/" + name
	_, err := m.admin.PutObject(context.Background(), &awss3.PutObjectInput{
		Bucket: aws.String(m.bucket), Key: aws.String(key), Body: bytes.NewReader(content),
	})
	require.NoError(t, err)
	return s3.ItemID(m.bucket, key)
}

func (m *moto) Delete(t *testing.T, id string) {
	key := strings.TrimPrefix(id, "s3://"+m.bucket+"/")
	_, err := m.admin.DeleteObject(context.Background(), &awss3.DeleteObjectInput{Bucket: aws.String(m.bucket), Key: aws.String(key)})
	require.NoError(t, err)
}

func (m *moto) ExpireCredential(*testing.T) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expired = true
	return true
}

func (m *moto) RateLimit(_ *testing.T, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.limits = append(m.limits, d)
}

func (m *moto) Served(id string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.served["/"+strings.TrimPrefix(id, "s3://")]
}

func TestConformanceMoto(t *testing.T) {
	motoEndpoint(t)
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newMoto(t) })
}

func TestListSkipsFolderMarkersAndOtherPrefixes(t *testing.T) {
	t.Parallel()
	m := newMoto(t)
	a := m.Put(t, "a.txt", []byte("a"))
	m.Put(t, "sub/", nil) // the console's folder marker
	b := m.Put(t, "sub/b.md", []byte("bb"))
	_, err := m.admin.PutObject(context.Background(), &awss3.PutObjectInput{
		Bucket: aws.String(m.bucket), Key: aws.String("other/c.txt"), Body: strings.NewReader("c"),
	})
	require.NoError(t, err)

	var items []connectors.Item
	for it, err := range connectors.All(context.Background(), m.conn, m.Source(), "") {
		require.NoError(t, err)
		items = append(items, it)
	}
	require.Len(t, items, 2)
	require.Equal(t, a, items[0].ID)
	require.Equal(t, "a.txt", items[0].Name)
	require.EqualValues(t, 1, items[0].Size)
	require.NotEmpty(t, items[0].Version, "the ETag")
	require.False(t, items[0].Modified.IsZero())
	require.Equal(t, b, items[1].ID)
	require.Equal(t, "b.md", items[1].Name)
}

func TestMaxItemsAndForeignCursor(t *testing.T) {
	t.Parallel()
	m := newMoto(t)
	for i := range 10 {
		m.Put(t, fmt.Sprintf("%02d", i), []byte("x"))
	}
	n := 0
	for _, err := range connectors.All(context.Background(), m.conn, connectors.Source{Location: m.bucket + "/docs/", MaxItems: 6}, "") {
		require.NoError(t, err)
		n++
	}
	require.Equal(t, 6, n, "MaxItems caps the listing across pages")

	page, err := m.conn.List(context.Background(), m.Source(), "")
	require.NoError(t, err)
	require.NotEmpty(t, page.Next)
	_, err = m.conn.List(context.Background(), connectors.Source{Location: m.bucket + "/other/"}, page.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "another source's cursor: %v", err)
	_, err = m.conn.List(context.Background(), m.Source(), "not a cursor")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestNoSuchBucketIsInvalid(t *testing.T) {
	t.Parallel()
	m := newMoto(t)
	_, err := m.conn.List(context.Background(), connectors.Source{Location: "apiary-no-such-bucket-x"}, "")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
	require.Contains(t, apiary.Message(err), "no such bucket")
}

// TestTooLargeByContentLength: an item opened without a listed size is
// refused from the answer's Content-Length, its body closed unread.
func TestTooLargeByContentLength(t *testing.T) {
	t.Parallel()
	m := newMoto(t)
	big := bytes.Repeat([]byte("z"), 16<<20)
	id := m.Put(t, "big", big)
	_, err := m.conn.Open(context.Background(), connectors.Item{ID: id, Size: -1})
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
	require.Less(t, m.Served(id), int64(len(big)))
}

func TestAssumeRole(t *testing.T) {
	t.Parallel()
	m := newMoto(t)
	id := m.Put(t, "a", []byte("content"))
	base := aws.Config{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(m.proxy.URL), // moto serves STS too
		Credentials:  credentials.NewStaticCredentialsProvider("APIARYOWNKEY", "apiary-secret", ""),
	}
	role := s3.Role{ARN: "arn:aws:iam::123456789012:role/apiary-reader", ExternalID: "apiary-conn-42"}
	c, err := s3.NewWithRole(s3.Config{Endpoint: m.proxy.URL, UsePathStyle: true, AllowPrivate: true}, base, role)
	require.NoError(t, err)
	for range 2 {
		page, err := c.List(context.Background(), m.Source(), "")
		require.NoError(t, err)
		require.Len(t, page.Items, 1)
		body, err := c.Open(context.Background(), page.Items[0])
		require.NoError(t, err)
		require.NoError(t, body.Body.Close())
	}
	m.mu.Lock()
	assumed, keys := m.assumed, m.keyIDs
	m.mu.Unlock()
	require.Len(t, assumed, 1, "the assumed credentials are cached")
	require.Equal(t, role.ARN, assumed[0].Get("RoleArn"))
	require.Equal(t, role.ExternalID, assumed[0].Get("ExternalId"))
	require.Equal(t, s3.RoleSessionName, assumed[0].Get("RoleSessionName"))
	require.NotContains(t, keys, "APIARYOWNKEY", "S3 requests are signed with the role's keys, not Apiary's")

	// A role that does not trust Apiary (or another ExternalId): forbidden.
	m.mu.Lock()
	m.denyRole = true
	m.mu.Unlock()
	denied, err := s3.NewWithRole(s3.Config{Endpoint: m.proxy.URL, UsePathStyle: true, AllowPrivate: true}, base, role)
	require.NoError(t, err)
	_, err = denied.List(context.Background(), m.Source(), "")
	require.Equal(t, apiary.KindForbidden, apiary.KindOf(err), "%v", err)
	_, err = denied.Open(context.Background(), connectors.Item{ID: id, Size: -1})
	require.Equal(t, apiary.KindForbidden, apiary.KindOf(err), "%v", err)
}

// newServerHarness is a harness over moto when it runs, else over the Go
// fake, for the tests that need no more than both serve.
func newServerHarness(t *testing.T) *moto {
	if ep := os.Getenv("APIARY_TEST_S3_ENDPOINT"); ep != "" {
		return newHarness(t, ep)
	}
	return newHarness(t, newFakeS3(t))
}

func TestPickedItems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newServerHarness(t)
	var ids []string
	for i := range 6 {
		ids = append(ids, m.Put(t, fmt.Sprintf("p%d.md", i), bytes.Repeat([]byte("x"), i+1)))
	}
	listed := map[string]connectors.Item{}
	for it, err := range connectors.All(ctx, m.conn, m.Source(), "") {
		require.NoError(t, err)
		listed[it.ID] = it
	}

	src := m.Source()
	src.Items = []string{ids[5], ids[0], ids[3], ids[1], ids[4]}
	first, err := m.conn.List(ctx, src, "")
	require.NoError(t, err)
	require.Len(t, first.Items, pageSize, "picks are paged by the page size")
	require.NotEmpty(t, first.Next)
	second, err := m.conn.List(ctx, src, first.Next)
	require.NoError(t, err)
	require.Empty(t, second.Next)
	got := append(first.Items, second.Items...)
	require.Len(t, got, len(src.Items))
	for i, it := range got {
		require.Equal(t, src.Items[i], it.ID, "in the order picked")
		want := listed[it.ID]
		require.Equal(t, want.Name, it.Name)
		require.Equal(t, want.Size, it.Size)
		require.Equal(t, want.Version, it.Version, "the version is the ETag, as listed")
		require.WithinDuration(t, want.Modified, it.Modified, time.Second)
	}

	// A cursor resumes only its own listing.
	other := src
	other.Items = []string{ids[0], ids[1], ids[2], ids[3], ids[4]}
	_, err = m.conn.List(ctx, other, first.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "another pick list's cursor: %v", err)
	_, err = m.conn.List(ctx, m.Source(), first.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a picked listing's cursor for the whole source: %v", err)
	whole, err := m.conn.List(ctx, m.Source(), "")
	require.NoError(t, err)
	require.NotEmpty(t, whole.Next)
	_, err = m.conn.List(ctx, src, whole.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "the whole source's cursor for picks: %v", err)

	// A pick gone at the source fails the listing, naming no key.
	m.Delete(t, ids[2])
	src.Items = []string{ids[0], ids[2]}
	_, err = m.conn.List(ctx, src, "")
	require.ErrorIs(t, err, connectors.ErrGone)
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(err))
	require.NotContains(t, err.Error(), "p2")

	// S3's answers to a HEAD carry no body: rate limits and credentials
	// are still told apart.
	src.Items = []string{ids[0]}
	m.RateLimit(t, 7*time.Second)
	_, err = m.conn.List(ctx, src, "")
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err), "%v", err)
	d, _ := apiary.RetryDelay(err)
	require.Equal(t, 7*time.Second, d)
	m.ExpireCredential(t)
	_, err = m.conn.List(ctx, src, "")
	require.Equal(t, apiary.KindUnauthenticated, apiary.KindOf(err), "an expired credential: %v", err)
}

func TestPickedItemsRefused(t *testing.T) {
	t.Parallel()
	m := newServerHarness(t)
	a := m.Put(t, "a.txt", []byte("a"))
	tooMany := make([]string, connectors.DefaultMaxItems+1)
	for i := range tooMany {
		tooMany[i] = s3.ItemID(m.bucket, fmt.Sprintf("docs/%d", i))
	}
	for _, tt := range []struct {
		name     string
		items    []string
		maxItems int
	}{
		{"another bucket", []string{s3.ItemID("apiary-other-bucket", "docs/a.txt")}, 0},
		{"outside the prefix", []string{s3.ItemID(m.bucket, "other/a.txt")}, 0},
		{"a bare key", []string{"docs/a.txt"}, 0},
		{"a folder marker", []string{s3.ItemID(m.bucket, "docs/sub/")}, 0},
		{"picked twice", []string{a, a}, 0},
		{"over MaxItems", []string{a, s3.ItemID(m.bucket, "docs/b"), s3.ItemID(m.bucket, "docs/c")}, 2},
		{"over the default cap", tooMany, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := connectors.Source{Location: m.bucket + "/docs/", MaxItems: tt.maxItems, Items: tt.items}
			_, err := m.conn.List(context.Background(), src, "")
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
			require.NotContains(t, err.Error(), "a.txt", "the error names the pick's index, not its key")
		})
	}
}
