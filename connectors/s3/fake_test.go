package s3_test

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiaryhq/apiary/connectors/connectortest"
)

// fakeS3 is a stateful Go fake of the part of S3's REST API (path style)
// the connector and the harness use: CreateBucket, PutObject, DeleteObject,
// ListObjectsV2 (prefix, max-keys, continuation tokens, IsTruncated),
// GetObject (ETag, If-None-Match, Content-Length) and HeadObject (GetObject's
// headers, no body, so its errors have no code), with S3's XML errors
// NoSuchBucket and NoSuchKey. It checks no signature.
type fakeS3 struct {
	mu      sync.Mutex
	buckets map[string]map[string]fakeObject
}

type fakeObject struct {
	body []byte
	etag string
	mod  time.Time
}

func newFakeS3(t *testing.T) string {
	f := &fakeS3{buckets: map[string]map[string]fakeObject{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	f.mu.Lock()
	defer f.mu.Unlock()
	objects, ok := f.buckets[bucket]
	if r.Method == http.MethodPut && key == "" {
		if !ok {
			f.buckets[bucket] = map[string]fakeObject{}
		}
		return
	}
	if !ok {
		s3Error(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist", nil)
		return
	}
	switch {
	case r.Method == http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sum := md5.Sum(body)
		o := fakeObject{body: body, etag: `"` + hex.EncodeToString(sum[:]) + `"`, mod: time.Now().UTC()}
		objects[key] = o
		w.Header().Set("ETag", o.etag)
	case r.Method == http.MethodDelete:
		delete(objects, key)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && key == "" && r.URL.Query().Get("list-type") == "2":
		f.list(w, r, objects)
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && key != "":
		// HEAD answers as GET does, without the body (net/http drops
		// it): so its errors carry no code, as S3's do not.
		o, ok := objects[key]
		if !ok {
			s3Error(w, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.", nil)
			return
		}
		w.Header().Set("ETag", o.etag)
		w.Header().Set("Last-Modified", o.mod.Format(http.TimeFormat))
		if inm := r.Header.Get("If-None-Match"); inm != "" && inm == o.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "binary/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(o.body)))
		w.Write(o.body)
	default:
		s3Error(w, http.StatusNotImplemented, "NotImplemented", "the fake does not do this", nil)
	}
}

type listResult struct {
	XMLName               xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
	Name                  string
	Prefix                string
	KeyCount              int
	MaxKeys               int
	IsTruncated           bool
	ContinuationToken     string `xml:",omitempty"`
	NextContinuationToken string `xml:",omitempty"`
	Contents              []listEntry
}

type listEntry struct {
	Key          string
	LastModified string
	ETag         string
	Size         int
	StorageClass string
}

func (f *fakeS3) list(w http.ResponseWriter, r *http.Request, objects map[string]fakeObject) {
	q := r.URL.Query()
	prefix := q.Get("prefix")
	maxKeys := 1000
	if v := q.Get("max-keys"); v != "" {
		maxKeys, _ = strconv.Atoi(v)
	}
	after := ""
	if tok := q.Get("continuation-token"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			s3Error(w, http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect", nil)
			return
		}
		after = string(b)
	}
	var keys []string
	for k := range objects {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	res := listResult{Name: r.URL.Path[1:], Prefix: prefix, MaxKeys: maxKeys, ContinuationToken: q.Get("continuation-token")}
	if len(keys) > maxKeys {
		keys = keys[:maxKeys]
		res.IsTruncated = true
		res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(keys[len(keys)-1]))
	}
	for _, k := range keys {
		o := objects[k]
		res.Contents = append(res.Contents, listEntry{
			Key: k, LastModified: o.mod.Format("2006-01-02T15:04:05.000Z"), ETag: o.etag,
			Size: len(o.body), StorageClass: "STANDARD",
		})
	}
	res.KeyCount = len(res.Contents)
	w.Header().Set("Content-Type", "application/xml")
	io.WriteString(w, xml.Header)
	xml.NewEncoder(w).Encode(res)
}

func TestConformanceFake(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, newFakeS3(t)) })
}
