package gdrive_test

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/connectortest"
	"github.com/apiaryhq/apiary/connectors/gdrive"
	"github.com/apiaryhq/apiary/connectors/gdrive/gdrivetest"
	"github.com/apiaryhq/apiary/connectors/rest"
)

const (
	pageSize = 4
	maxBytes = 1 << 20
)

// harness drives the fake for the conformance suite, over one kind of
// source: "all", "folder" (items put alternately in the folder and a
// subfolder of a subfolder) or "drive" (a shared drive). Each source has
// neighbours it must not list, and things it must skip: a folder, a
// shortcut, a trashed file, a Drawing.
type harness struct {
	f      *gdrivetest.Fake
	base   string
	conn   *gdrive.Connector
	src    connectors.Source
	places []string // where Put creates, in turn

	mu    sync.Mutex
	names map[string]string // Put's name → id
	puts  int
}

func newConnector(t *testing.T, base string, tok string, cfg gdrive.Config) *gdrive.Connector {
	t.Helper()
	cfg.BaseURL, cfg.AllowPrivate = base, true
	if cfg.PageSize == 0 {
		cfg.PageSize = pageSize
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = maxBytes
	}
	c, err := gdrive.New(cfg, rest.Static(apiary.NewSecret(tok)))
	require.NoError(t, err)
	return c
}

func newHarness(t *testing.T, kind string) *harness {
	f, base := gdrivetest.Start(t)
	h := &harness{f: f, base: base, names: map[string]string{}}
	h.conn = newConnector(t, base, f.Token(), gdrive.Config{})
	noise := func(parent string) {
		dir := f.Add(parent, "a folder", gdrivetest.MimeFolder, nil)
		f.Add(dir, "an empty folder", gdrivetest.MimeFolder, nil)
		f.Add(parent, "a shortcut", gdrivetest.MimeShortcut, nil)
		f.Add(parent, "a drawing", gdrivetest.MimeDrawing, []byte("<svg/>"))
		f.Trash(f.Add(parent, "trashed.txt", "text/plain", []byte("in the trash")))
	}
	switch kind {
	case "all":
		h.src = connectors.Source{Location: "all"}
		h.places = []string{""}
		noise("")
	case "folder":
		top := f.Add("", "Projects", gdrivetest.MimeFolder, nil)
		mid := f.Add(top, "2026", gdrivetest.MimeFolder, nil)
		deep := f.Add(mid, "Q4", gdrivetest.MimeFolder, nil)
		h.src = connectors.Source{Location: "folder:" + top}
		h.places = []string{top, deep}
		noise(top)
		noise(mid)
		f.Add("", "outside.txt", "text/plain", []byte("not in the folder"))
	case "drive":
		d := f.AddDrive()
		h.src = connectors.Source{Location: "drive:" + d}
		h.places = []string{d}
		noise(d)
		f.Add("", "my-drive.txt", "text/plain", []byte("not in the shared drive"))
		other := f.AddDrive()
		f.Add(other, "other-drive.txt", "text/plain", []byte("another shared drive"))
	default:
		t.Fatalf("no harness of %q", kind)
	}
	return h
}

func (h *harness) Connector() connectors.Connector { return h.conn }
func (h *harness) Source() connectors.Source       { return h.src }
func (h *harness) PageSize() int                   { return pageSize }
func (h *harness) MaxBytes() int64                 { return maxBytes }

// Put uploads a plain file, or replaces the content of the one of name.
func (h *harness) Put(_ *testing.T, name string, content []byte) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, ok := h.names[name]; ok {
		h.f.SetContent(id, content)
		return id
	}
	id := h.f.Add(h.places[h.puts%len(h.places)], name, "text/plain", content)
	h.puts++
	h.names[name] = id
	return id
}

// Delete moves the file to the trash.
func (h *harness) Delete(_ *testing.T, id string) { h.f.Trash(id) }

func (h *harness) ExpireCredential(*testing.T) bool {
	h.f.SetToken("ya29.fake-token-2")
	return true
}

// RateLimit answers the next request as Drive's per-user limit does, with
// a Retry-After (which Drive itself seldom sends).
func (h *harness) RateLimit(_ *testing.T, d time.Duration) {
	h.f.FailNext(gdrivetest.Fault{Status: 403, Reason: "userRateLimitExceeded", Message: "User rate limit exceeded.", RetryAfter: d})
}

func (h *harness) Served(id string) int64 { return h.f.ServedBytes(id) }

func TestConformanceAll(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, "all") })
}

func TestConformanceFolder(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, "folder") })
}

func TestConformanceSharedDrive(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, "drive") })
}

// readAll is a test helper: the whole body of r.
func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}
