package artifact

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/artifact/artifacttest"
)

// fixture is an archive of two wanted files and some that are not, served
// at /a.tgz or /a.jar.
type fixture struct {
	archive []byte
	files   []File
	bodies  map[string][]byte // file name → content
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func newFixture(t *testing.T, format string, extra ...artifacttest.Member) fixture {
	t.Helper()
	model, tok := random(t, 64<<10), []byte(`{"model":"tokenizer"}`)
	members := append([]artifacttest.Member{
		{Name: "package/README.md", Body: []byte("not wanted")},
		{Name: "package/bin/lib.so.1", Body: model},
		{Name: "package/tokenizer.json", Body: tok},
	}, extra...)
	var archive []byte
	switch format {
	case "tgz":
		archive = artifacttest.Tgz(t, members...)
	case "zip":
		archive = artifacttest.Zip(t, members...)
	}
	return fixture{
		archive: archive,
		files: []File{
			{Member: "package/bin/lib.so.1", Name: "lib.so.1", SHA256: artifacttest.Digest(model)},
			{Member: "package/tokenizer.json", Name: "tokenizer.json", SHA256: artifacttest.Digest(tok)},
		},
		bodies: map[string][]byte{"lib.so.1": model, "tokenizer.json": tok},
	}
}

func (fx fixture) artifact(url string) Artifact {
	return Artifact{URL: url, SHA256: artifacttest.Digest(fx.archive), Files: fx.files}
}

// listDir returns the names in dir, sorted.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// requireFiles checks that dir holds exactly fx's files, with their content,
// beside the fetcher's lock and marks.
func requireFiles(t *testing.T, dir string, fx fixture) {
	t.Helper()
	want := []string{lockFile, marksFile}
	for name, body := range fx.bodies {
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.True(t, bytes.Equal(body, got), "%s differs", name)
		want = append(want, name)
	}
	slices.Sort(want)
	require.Equal(t, want, listDir(t, dir))
}

// requireNothingLeft checks that dir holds no file of the artifact, no temp
// file and no partial download: only the lock.
func requireNothingLeft(t *testing.T, dir string) {
	t.Helper()
	require.Equal(t, []string{lockFile}, listDir(t, dir))
}

func TestFetchTakesTheFilesOutOfATgzOrAZip(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"tgz", "zip"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t, format)
			srv := artifacttest.Serve(t, map[string][]byte{"/a." + format: fx.archive})
			dir := filepath.Join(t.TempDir(), "models", "x")
			a := fx.artifact(srv.URL + "/a." + format)

			require.NoError(t, Fetch(t.Context(), a, dir, nil))
			requireFiles(t, dir, fx)
			require.Equal(t, 1, srv.TotalHits())

			// Present with their digests: no download.
			require.NoError(t, Fetch(t.Context(), a, dir, nil))
			require.Equal(t, 1, srv.TotalHits())
		})
	}
}

func TestFetchVerifiesFilesAlreadyThere(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "tgz")
	srv := artifacttest.Serve(t, map[string][]byte{"/a.tgz": fx.archive})
	a := fx.artifact(srv.URL + "/a.tgz")

	// Right files put there by hand, without marks: hashed, not fetched.
	dir := t.TempDir()
	for name, body := range fx.bodies {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), body, 0o644))
	}
	require.NoError(t, Fetch(t.Context(), a, dir, nil))
	require.Zero(t, srv.TotalHits())
	requireFiles(t, dir, fx)

	// A file changed since it was marked: fetched again and replaced.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{"changed":true}`), 0o644))
	require.NoError(t, Fetch(t.Context(), a, dir, nil))
	require.Equal(t, 1, srv.TotalHits())
	requireFiles(t, dir, fx)
}

func TestFetchRefusesWhatDoesNotMatchItsDigest(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "zip")
	srv := artifacttest.Serve(t, map[string][]byte{"/a.jar": fx.archive})
	url := srv.URL + "/a.jar"

	wrongArchive := fx.artifact(url)
	wrongArchive.SHA256 = artifacttest.Digest([]byte("another archive"))
	wrongFile := fx.artifact(url)
	wrongFile.Files = slices.Clone(fx.files)
	wrongFile.Files[1].SHA256 = artifacttest.Digest([]byte("another tokenizer"))

	for name, tt := range map[string]struct {
		a    Artifact
		want string
	}{
		"archive": {wrongArchive, "artifact: fetch " + url + ": archive sha256 " + artifacttest.Digest(fx.archive) + ", want " + wrongArchive.SHA256},
		"file":    {wrongFile, "artifact: fetch " + url + ": member package/tokenizer.json has sha256 " + fx.files[1].SHA256 + ", want " + wrongFile.Files[1].SHA256},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			err := Fetch(t.Context(), tt.a, dir, nil)
			require.EqualError(t, err, tt.want)
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
			requireNothingLeft(t, dir)
		})
	}
}

func TestFetchRefusesAMissingOrIrregularMember(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"tgz", "zip"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t, format, artifacttest.Member{Name: "package/link", Link: "/etc/passwd"})
			srv := artifacttest.Serve(t, map[string][]byte{"/a": fx.archive})

			missing := fx.artifact(srv.URL + "/a")
			missing.Files = append(slices.Clone(fx.files), File{Member: "package/absent.onnx", Name: "absent.onnx", SHA256: fx.files[0].SHA256})
			dir := t.TempDir()
			err := Fetch(t.Context(), missing, dir, nil)
			require.ErrorContains(t, err, ": not in the archive: package/absent.onnx")
			requireNothingLeft(t, dir)

			link := fx.artifact(srv.URL + "/a")
			link.Files = append(slices.Clone(fx.files), File{Member: "package/link", Name: "link", SHA256: fx.files[0].SHA256})
			dir = t.TempDir()
			err = Fetch(t.Context(), link, dir, nil)
			require.ErrorContains(t, err, ": member package/link is not a regular file")
			requireNothingLeft(t, dir)
		})
	}
}

// Zip slip: a name in the archive never decides where a file is written,
// and an artifact whose own names leave the directory is refused before
// anything is downloaded.
func TestFetchWritesOnlyInsideTheDirectory(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"tgz", "zip"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			evil := []byte("escaped")
			fx := newFixture(t, format,
				artifacttest.Member{Name: "../../escape", Body: evil},
				artifacttest.Member{Name: "/tmp/escape-abs", Body: evil},
				artifacttest.Member{Name: "package/../../escape2", Body: evil},
			)
			srv := artifacttest.Serve(t, map[string][]byte{"/a": fx.archive})
			root := t.TempDir()
			dir := filepath.Join(root, "a", "b")
			require.NoError(t, Fetch(t.Context(), fx.artifact(srv.URL+"/a"), dir, nil))
			requireFiles(t, dir, fx)
			require.Equal(t, []string{"a"}, listDir(t, root))
			require.Equal(t, []string{"b"}, listDir(t, filepath.Join(root, "a")))
		})
	}

	fx := newFixture(t, "tgz", artifacttest.Member{Name: "../evil", Body: []byte("x")})
	srv := artifacttest.Serve(t, map[string][]byte{"/a": fx.archive})
	sum := fx.files[0].SHA256
	for _, file := range []File{
		{Member: "../evil", Name: "evil", SHA256: sum},
		{Member: "/etc/passwd", Name: "passwd", SHA256: sum},
		{Member: "package/bin/lib.so.1", Name: "../lib.so.1", SHA256: sum},
		{Member: "package/bin/lib.so.1", Name: "/tmp/lib.so.1", SHA256: sum},
		{Member: "package/bin/lib.so.1", Name: "sub/lib.so.1", SHA256: sum},
		{Member: "package/bin/lib.so.1", Name: `..\lib.so.1`, SHA256: sum},
		{Member: "package/bin/lib.so.1", Name: ".lock", SHA256: sum},
		{Member: "package/bin/lib.so.1", Name: "lib.so.1", SHA256: "not a digest"},
	} {
		dir := filepath.Join(t.TempDir(), "d")
		a := Artifact{URL: srv.URL + "/a", SHA256: artifacttest.Digest(fx.archive), Files: []File{file}}
		err := Fetch(t.Context(), a, dir, nil)
		require.Error(t, err, "%+v", file)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%+v", file)
		require.NoDirExists(t, dir)
	}
	require.Zero(t, srv.TotalHits())
}

func TestFetchNeedsHTTPSOrLoopback(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "tgz")
	dir := t.TempDir()
	for _, url := range []string{"http://example.com/a.tgz", "ftp://127.0.0.1/a.tgz", "file:///etc/passwd"} {
		err := Fetch(t.Context(), fx.artifact(url), dir, nil)
		require.ErrorContains(t, err, "artifact: fetch "+url+": only https URLs are fetched (or http to a loopback host)")
	}
	require.Empty(t, listDir(t, dir))
}

// A mirror serves the artifact under the same path: tests point fetches at
// a local server with it.
func TestFetchFromAMirror(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "zip")
	srv := artifacttest.Serve(t, map[string][]byte{"/maven2/x/a.jar": fx.archive})
	dir := t.TempDir()
	f := Fetcher{Mirror: srv.URL + "/"}
	require.NoError(t, f.Fetch(t.Context(), fx.artifact("https://repo.example/maven2/x/a.jar"), dir))
	requireFiles(t, dir, fx)
	require.Equal(t, 1, srv.Hits("/maven2/x/a.jar"))
}

func TestFetchFailsInOneLineNamingTheURL(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "tgz")
	srv := artifacttest.Serve(t, nil)
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "try later", http.StatusServiceUnavailable)
	}))
	t.Cleanup(flaky.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	for _, tt := range []struct {
		url, want string
		kind      apiary.Kind
	}{
		{srv.URL + "/a.tgz", "artifact: fetch " + srv.URL + "/a.tgz: status 404 Not Found", apiary.KindOther},
		{flaky.URL + "/a.tgz", "artifact: fetch " + flaky.URL + "/a.tgz: status 503 Service Unavailable", apiary.KindUnavailable},
		{closed.URL + "/a.tgz", "artifact: fetch " + closed.URL + "/a.tgz: dial tcp " + strings.TrimPrefix(closed.URL, "http://") + ": connect: connection refused", apiary.KindUnavailable},
	} {
		dir := t.TempDir()
		err := Fetch(t.Context(), fx.artifact(tt.url), dir, nil)
		require.EqualError(t, err, tt.want)
		require.Equal(t, tt.kind, apiary.KindOf(err))
		requireNothingLeft(t, dir)
	}
}

func TestFetchBoundsTheArchiveAndItsFiles(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "tgz")
	srv := artifacttest.Serve(t, map[string][]byte{"/a.tgz": fx.archive})
	url := srv.URL + "/a.tgz"

	dir := t.TempDir()
	err := Fetcher{MaxBytes: int64(len(fx.archive)) - 1}.Fetch(t.Context(), fx.artifact(url), dir)
	require.EqualError(t, err, fmt.Sprintf("artifact: fetch %s: the archive is %d bytes, more than the %d allowed", url, len(fx.archive), len(fx.archive)-1))
	requireNothingLeft(t, dir)

	// The archive fits, a file in it does not (zeros compress well).
	zeros := make([]byte, 1<<20)
	small := artifacttest.Zip(t, artifacttest.Member{Name: "big", Body: zeros})
	srv = artifacttest.Serve(t, map[string][]byte{"/big.zip": small})
	dir = t.TempDir()
	a := Artifact{URL: srv.URL + "/big.zip", SHA256: artifacttest.Digest(small), Files: []File{{Member: "big", Name: "big", SHA256: artifacttest.Digest(zeros)}}}
	err = Fetcher{MaxBytes: 64 << 10}.Fetch(t.Context(), a, dir)
	require.EqualError(t, err, "artifact: fetch "+srv.URL+"/big.zip: member big is more than the 65536 bytes allowed")
	requireNothingLeft(t, dir)
}

// cutServer serves body, but cuts the first response off after half of it
// (the client sees the connection end early), and records each request's
// Range header.
type cutServer struct {
	*httptest.Server
	mu     sync.Mutex
	ranges []string
}

func newCutServer(t *testing.T, body []byte) *cutServer {
	s := &cutServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		first := len(s.ranges) == 1
		s.mu.Unlock()
		if first {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			_, _ = w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the connection ends here
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(s.Close)
	return s
}

func TestFetchResumesAnInterruptedDownload(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "tgz")
	srv := newCutServer(t, fx.archive)
	dir := t.TempDir()
	a := fx.artifact(srv.URL + "/a.tgz")

	err := Fetch(t.Context(), a, dir, nil)
	require.Error(t, err)
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), err)
	part := filepath.Join(dir, partPrefix+a.SHA256[:16])
	st, err := os.Stat(part)
	require.NoError(t, err, "the part downloaded is kept")
	half := int64(len(fx.archive) / 2)
	require.Equal(t, half, st.Size())

	var reports []Report
	require.NoError(t, Fetch(t.Context(), a, dir, func(r Report) { reports = append(reports, r) }))
	requireFiles(t, dir, fx)
	require.Equal(t, []string{"", fmt.Sprintf("bytes=%d-", half)}, srv.ranges)
	require.Equal(t, half, reports[0].Done, "progress starts where the part ended")
	last := reports[len(reports)-1]
	require.True(t, last.Final)
	require.Equal(t, int64(len(fx.archive)), last.Done)
	require.Equal(t, int64(len(fx.archive)), last.Total)
}

// A part file that is not a beginning of the archive (another version's,
// say) is downloaded again from the start, whether the server resumes it
// (and the digest then differs) or refuses the range.
func TestFetchRedoesAPartThatIsNotABeginning(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "zip")
	for name, part := range map[string][]byte{
		"shorter": random(t, 1000),
		"longer":  random(t, len(fx.archive)+10),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := artifacttest.Serve(t, map[string][]byte{"/a.jar": fx.archive})
			dir := t.TempDir()
			a := fx.artifact(srv.URL + "/a.jar")
			require.NoError(t, os.WriteFile(filepath.Join(dir, partPrefix+a.SHA256[:16]), part, 0o600))
			require.NoError(t, Fetch(t.Context(), a, dir, nil))
			requireFiles(t, dir, fx)
			require.Equal(t, 2, srv.TotalHits())
		})
	}
}

func TestFetchEndsAStalledDownload(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "tgz")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(fx.archive)))
		_, _ = w.Write(fx.archive[:100])
		w.(http.Flusher).Flush()
		<-r.Context().Done() // then nothing, until the client gives up
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	err := Fetcher{Stall: 200 * time.Millisecond}.Fetch(t.Context(), fx.artifact(srv.URL+"/a.tgz"), dir)
	require.EqualError(t, err, "artifact: fetch "+srv.URL+"/a.tgz: nothing received for 200ms")
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err))
}

// Two fetchers into one directory take turns: the second waits for the
// first's lock, then finds the files there and downloads nothing.
func TestConcurrentFetchersTakeTurns(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "tgz")
	var (
		mu       sync.Mutex
		requests int
	)
	inHandler, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		close(inHandler) // a second request would panic here
		<-release
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(fx.archive))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	a := fx.artifact(srv.URL + "/a.tgz")

	first := make(chan error, 1)
	go func() { first <- Fetch(context.Background(), a, dir, nil) }()
	<-inHandler // the first holds the lock and is downloading

	waiting := make(chan struct{})
	second := make(chan error, 1)
	go func() {
		second <- Fetcher{lockBusy: func() { close(waiting) }}.Fetch(context.Background(), a, dir)
	}()
	select {
	case <-waiting:
	case err := <-second:
		t.Fatalf("the second fetcher did not wait for the first: %v", err)
	}
	close(release)
	require.NoError(t, <-first)
	require.NoError(t, <-second)
	require.Equal(t, 1, requests)
	requireFiles(t, dir, fx)
}

// A fetcher waiting for the lock gives up when its context ends.
func TestFetchWaitingForTheLockEndsWithItsContext(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, "tgz")
	dir := t.TempDir()
	held, err := Fetcher{}.lock(t.Context(), dir)
	require.NoError(t, err)
	defer held()

	ctx, cancel := context.WithCancel(t.Context())
	f := Fetcher{lockBusy: cancel}
	err = f.Fetch(ctx, fx.artifact("https://example.com/a.tgz"), dir)
	require.ErrorContains(t, err, "waiting for another fetch into "+dir+": context canceled")
}
