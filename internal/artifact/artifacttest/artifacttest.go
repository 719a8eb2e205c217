// Package artifacttest builds archives in memory and serves them over a
// local HTTP server, for tests of code that fetches artifacts.
package artifacttest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Member is one entry of a built archive: a regular file with Body, or,
// when Link is set, a symbolic link to Link.
type Member struct {
	Name string
	Body []byte
	Link string
}

// Tgz returns a gzipped tar of members.
func Tgz(t testing.TB, members ...Member) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, m := range members {
		h := &tar.Header{Name: m.Name, Mode: 0o644, Size: int64(len(m.Body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if m.Link != "" {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, m.Link, 0
		}
		require.NoError(t, tw.WriteHeader(h))
		if m.Link == "" {
			_, err := tw.Write(m.Body)
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

// Zip returns a zip (a jar is one) of members.
func Zip(t testing.TB, members ...Member) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range members {
		h := &zip.FileHeader{Name: m.Name, Method: zip.Deflate}
		body := m.Body
		if m.Link != "" {
			h.SetMode(0o777 | 1<<27) // os.ModeSymlink
			body = []byte(m.Link)
		}
		w, err := zw.CreateHeader(h)
		require.NoError(t, err)
		_, err = w.Write(body)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// Digest is the hex SHA-256 of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Server serves bodies by URL path (with Range requests, as
// http.ServeContent does) and counts the requests for each path; any other
// path is 404.
type Server struct {
	*httptest.Server
	mu     sync.Mutex
	bodies map[string][]byte
	hits   map[string]int
}

// Serve starts a Server, closed when t ends.
func Serve(t testing.TB, bodies map[string][]byte) *Server {
	t.Helper()
	s := &Server{bodies: bodies, hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		body, ok := s.bodies[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(s.Close)
	return s
}

// Hits returns how many requests asked for path.
func (s *Server) Hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// TotalHits returns how many requests the server answered.
func (s *Server) TotalHits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, h := range s.hits {
		n += h
	}
	return n
}
