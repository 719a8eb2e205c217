// Package gdrivetest is a stateful fake of the Google Drive API v3, on a
// real local HTTP server, for the gdrive connector's tests and the
// end-to-end tests of cmd/apiary. For tests only.
package gdrivetest

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fake is a stateful Go fake of the part of Drive API v3 the connector
// uses, under /drive/v3: files.list (q with the clauses "trashed = false",
// "'<id>' in parents", "mimeType = / != '<type>'"; corpora user, drive with
// driveId, allDrives; pageSize and opaque page tokens; partial answers by
// fields: without one a file has only kind, id, name and mimeType, and
// nextPageToken is sent only when fields names it), files.get (metadata,
// alt=media), files.export (10 MB limit: 403 exportSizeLimitExceeded),
// changes.getStartPageToken and changes.list (a log with numeric page
// tokens, a change per mutation, shared drives' own changes among them).
// Shared drive files are found only with supportsAllDrives=true (files.get
// answers 404 without it) and listed only with includeItemsFromAllDrives.
// Every request must carry the current bearer token: any other is a 401
// with Google's error body. Errors are Google's JSON
// {"error":{"code","message","errors":[{"domain","reason","message"}]}};
// their messages hold VendorText (and a 401's the token presented), so
// that tests see the connector never repeats them.
type Fake struct {
	mu          sync.Mutex
	files       map[string]*fakeFile
	order       []string // files by creation
	drives      map[string]bool
	log         []fakeChange
	root        string // My Drive's root folder
	token       string
	exportLimit int
	fail        []Fault // answers of the next requests
	served      map[string]int64
	seq         int
	gets        int // files.get of metadata
}

const VendorText = "VENDOR-SAYS-SECRET-DETAIL"

type fakeFile struct {
	id, name, mime string
	parents        []string
	drive          string
	trashed        bool
	content        []byte
	version        int64
	modified       time.Time
}

// fakeChange is an entry of the changes log: a file's change (left names
// the shared drive the file moved out of, if it did), or a shared drive's
// own (drive).
type fakeChange struct {
	fileID, left, drive string
	at                  time.Time
}

// Fault is an error answer the fake gives to the next request (FailNext).
type Fault struct {
	Status          int
	Reason, Message string
	RetryAfter      time.Duration
}

const (
	MimeFolder   = "application/vnd.google-apps.folder"
	MimeShortcut = "application/vnd.google-apps.shortcut"
	MimeDoc      = "application/vnd.google-apps.document"
	MimeSheet    = "application/vnd.google-apps.spreadsheet"
	MimeSlides   = "application/vnd.google-apps.presentation"
	MimeDrawing  = "application/vnd.google-apps.drawing"
)

// fakeExports are the export formats the fake knows per native type.
var fakeExports = map[string][]string{
	MimeDoc:     {"text/markdown", "text/plain", "text/html"},
	MimeSheet:   {"text/csv", "text/tab-separated-values"},
	MimeSlides:  {"text/plain"},
	MimeDrawing: {"image/png", "application/pdf"},
}

// New returns an empty fake (My Drive only) that accepts the bearer token
// "ya29.fake-token-1"; serve it with an HTTP server of the caller's
// (under /drive/v3), or use Start.
func New() *Fake {
	f := &Fake{
		files: map[string]*fakeFile{}, drives: map[string]bool{}, served: map[string]int64{},
		token: "ya29.fake-token-1", exportLimit: 10 << 20,
	}
	f.root = f.newID("0A")
	return f
}

// Start serves a New fake on a local server for the test's lifetime and
// returns it with its API base URL (…/drive/v3).
func Start(t testing.TB) (*Fake, string) {
	f := New()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL + "/drive/v3"
}

// newID returns a Drive-like id: 33 URL-safe characters.
func (f *Fake) newID(prefix string) string {
	f.seq++
	sum := sha256.Sum256([]byte(strconv.Itoa(f.seq)))
	return (prefix + base64.RawURLEncoding.EncodeToString(sum[:]))[:33]
}

// AddDrive creates a shared drive and returns its id (also its root
// folder's).
func (f *Fake) AddDrive() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.newID("0A")
	f.drives[id] = true
	f.log = append(f.log, fakeChange{drive: id, at: time.Now().UTC()})
	return id
}

// Add creates a file in parent (in a shared drive when parent is one or is
// in one) and returns its id.
func (f *Fake) Add(parent, name, mime string, content []byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if parent == "" {
		parent = f.root
	}
	ff := &fakeFile{id: f.newID("1"), name: name, mime: mime, parents: []string{parent}, content: content}
	if f.drives[parent] {
		ff.drive = parent
	} else if p := f.files[parent]; p != nil {
		ff.drive = p.drive
	}
	f.files[ff.id] = ff
	f.order = append(f.order, ff.id)
	f.touch(ff)
	return ff.id
}

// touch records a change to ff. Callers hold mu.
func (f *Fake) touch(ff *fakeFile) {
	ff.version++
	ff.modified = time.Now().UTC()
	f.log = append(f.log, fakeChange{fileID: ff.id, at: ff.modified})
}

func (f *Fake) edit(id string, fn func(*fakeFile)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff := f.files[id]
	fn(ff)
	f.touch(ff)
}

// SetContent replaces id's content.
func (f *Fake) SetContent(id string, content []byte) {
	f.edit(id, func(ff *fakeFile) { ff.content = content })
}

// Trash moves id to the trash.
func (f *Fake) Trash(id string) { f.edit(id, func(ff *fakeFile) { ff.trashed = true }) }

// Move makes parent id's only parent.
func (f *Fake) Move(id, parent string) {
	f.edit(id, func(ff *fakeFile) { ff.parents = []string{parent} })
}

// MoveToDrive moves id to the root of shared drive d.
func (f *Fake) MoveToDrive(id, d string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff := f.files[id]
	left := ff.drive
	ff.parents, ff.drive = []string{d}, d
	ff.version++
	ff.modified = time.Now().UTC()
	f.log = append(f.log, fakeChange{fileID: id, left: left, at: ff.modified})
}

// Remove deletes id for good (not to the trash).
func (f *Fake) Remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.files, id)
	f.log = append(f.log, fakeChange{fileID: id, at: time.Now().UTC()})
}

// FailNext makes the next request answer fault.
func (f *Fake) FailNext(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = append(f.fail, fault)
}

// Token is the bearer token the fake accepts.
func (f *Fake) Token() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.token
}

// Root is the id of My Drive's root folder.
func (f *Fake) Root() string { return f.root }

// SetExportLimit sets the size over which an export answers 403
// exportSizeLimitExceeded (10 MB, as Drive's, by default).
func (f *Fake) SetExportLimit(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exportLimit = n
}

// SetToken makes tok the one bearer token the fake accepts.
func (f *Fake) SetToken(tok string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.token = tok
}

// MetadataGets counts files.get requests for metadata.
func (f *Fake) MetadataGets() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets
}

// ServedBytes counts the content bytes served of id.
func (f *Fake) ServedBytes(id string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served[id]
}

// googleError writes Google's error body.
func googleError(w http.ResponseWriter, status int, domain, reason, message string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": status, "message": message,
		"errors": []map[string]any{{"domain": domain, "reason": reason, "message": message}},
	}})
}

func invalid(w http.ResponseWriter, param string) {
	googleError(w, http.StatusBadRequest, "global", "invalid", "Invalid Value: "+param+" "+VendorText)
}

func notFound(w http.ResponseWriter, id string) {
	googleError(w, http.StatusNotFound, "global", "notFound", "File not found: "+id+". "+VendorText)
}

func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "); got != f.token {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
		googleError(w, http.StatusUnauthorized, "global", "authError",
			"Request had invalid authentication credentials ("+got+"). "+VendorText)
		return
	}
	if len(f.fail) > 0 {
		fault := f.fail[0]
		f.fail = f.fail[1:]
		if fault.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(fault.RetryAfter/time.Second)))
		}
		googleError(w, fault.Status, "usageLimits", fault.Reason, fault.Message+" "+VendorText)
		return
	}
	if r.Method != http.MethodGet {
		googleError(w, http.StatusMethodNotAllowed, "global", "methodNotAllowed", "the fake reads only")
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/drive/v3/")
	if !ok {
		googleError(w, http.StatusNotFound, "global", "notFound", "Not Found")
		return
	}
	parts := strings.Split(path, "/")
	switch {
	case path == "files":
		f.list(w, r)
	case len(parts) == 2 && parts[0] == "files":
		f.get(w, r, parts[1])
	case len(parts) == 3 && parts[0] == "files" && parts[2] == "export":
		f.export(w, r, parts[1])
	case path == "changes/startPageToken":
		json.NewEncoder(w).Encode(map[string]any{"kind": "drive#startPageToken", "startPageToken": strconv.Itoa(len(f.log) + 1)})
	case path == "changes":
		f.changes(w, r)
	default:
		googleError(w, http.StatusNotFound, "global", "notFound", "Not Found")
	}
}

// visible is whether ff is reachable by a request with q's
// supportsAllDrives.
func visible(ff *fakeFile, q map[string][]string) bool {
	return ff != nil && (ff.drive == "" || first(q, "supportsAllDrives") == "true")
}

func first(q map[string][]string, k string) string {
	if v := q[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// render is ff as Drive answers it: the full resource when fields asks for
// more than the defaults.
func render(ff *fakeFile, fields string) map[string]any {
	m := map[string]any{"kind": "drive#file", "id": ff.id, "name": ff.name, "mimeType": ff.mime}
	if !strings.Contains(fields, "version") && fields != "*" {
		if strings.Contains(fields, "parents") {
			m["parents"] = ff.parents
		}
		return m
	}
	m["parents"] = ff.parents
	m["trashed"] = ff.trashed
	m["version"] = strconv.FormatInt(ff.version, 10)
	m["modifiedTime"] = ff.modified.Format("2006-01-02T15:04:05.000Z")
	if ff.drive != "" {
		m["driveId"] = ff.drive
	}
	if !strings.HasPrefix(ff.mime, "application/vnd.google-apps.") {
		sum := md5.Sum(ff.content)
		m["md5Checksum"] = hex.EncodeToString(sum[:])
		m["size"] = strconv.Itoa(len(ff.content))
	}
	return m
}

// match reads files.list's q, the clauses the fake knows joined by "and".
func match(q string) (func(*fakeFile) bool, bool) {
	var tests []func(*fakeFile) bool
	for _, c := range strings.Split(q, " and ") {
		c = strings.TrimSpace(c)
		switch {
		case c == "":
		case c == "trashed = false" || c == "trashed = true":
			want := c == "trashed = true"
			tests = append(tests, func(ff *fakeFile) bool { return ff.trashed == want })
		case strings.HasSuffix(c, "' in parents") && strings.HasPrefix(c, "'"):
			id := strings.TrimSuffix(strings.TrimPrefix(c, "'"), "' in parents")
			tests = append(tests, func(ff *fakeFile) bool { return slices.Contains(ff.parents, id) })
		case strings.HasPrefix(c, "mimeType != '") && strings.HasSuffix(c, "'"):
			m := strings.TrimSuffix(strings.TrimPrefix(c, "mimeType != '"), "'")
			tests = append(tests, func(ff *fakeFile) bool { return ff.mime != m })
		case strings.HasPrefix(c, "mimeType = '") && strings.HasSuffix(c, "'"):
			m := strings.TrimSuffix(strings.TrimPrefix(c, "mimeType = '"), "'")
			tests = append(tests, func(ff *fakeFile) bool { return ff.mime == m })
		default:
			return nil, false
		}
	}
	return func(ff *fakeFile) bool {
		for _, t := range tests {
			if !t(ff) {
				return false
			}
		}
		return true
	}, true
}

func pageSizeParam(w http.ResponseWriter, q map[string][]string) (int, bool) {
	n := 100
	if v := first(q, "pageSize"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 1000 {
			invalid(w, "pageSize")
			return 0, false
		}
	}
	return n, true
}

func (f *Fake) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	keep, ok := match(first(q, "q"))
	if !ok {
		invalid(w, "q")
		return
	}
	n, ok := pageSizeParam(w, q)
	if !ok {
		return
	}
	all := first(q, "includeItemsFromAllDrives") == "true"
	if all && first(q, "supportsAllDrives") != "true" {
		invalid(w, "includeItemsFromAllDrives needs supportsAllDrives")
		return
	}
	corpus := func(ff *fakeFile) bool { return ff.drive == "" }
	switch corpora, driveID := first(q, "corpora"), first(q, "driveId"); corpora {
	case "", "user":
	case "drive":
		if !all || !f.drives[driveID] {
			invalid(w, "driveId")
			return
		}
		corpus = func(ff *fakeFile) bool { return ff.drive == driveID }
	case "allDrives":
		if !all {
			invalid(w, "corpora")
			return
		}
		corpus = func(*fakeFile) bool { return true }
	default:
		invalid(w, "corpora")
		return
	}
	// The page token: the offset and the query it belongs to.
	key := fmt.Sprintf("%x", sha256.Sum256([]byte(q.Get("q")+"|"+q.Get("corpora")+"|"+q.Get("driveId"))))[:12]
	off := 0
	if tok := first(q, "pageToken"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		k, o, _ := strings.Cut(string(b), ":")
		if off, err = strconv.Atoi(o); err != nil || k != key || off < 0 {
			invalid(w, "pageToken")
			return
		}
	}
	var hits []*fakeFile
	for _, id := range f.order {
		if ff := f.files[id]; ff != nil && corpus(ff) && keep(ff) {
			hits = append(hits, ff)
		}
	}
	fields := first(q, "fields")
	out := map[string]any{"kind": "drive#fileList", "incompleteSearch": false}
	if off+n < len(hits) && (fields == "" || strings.Contains(fields, "nextPageToken")) {
		out["nextPageToken"] = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s:%d", key, off+n))
	}
	files := []map[string]any{}
	for _, ff := range hits[min(off, len(hits)):min(off+n, len(hits))] {
		files = append(files, render(ff, fields))
	}
	out["files"] = files
	json.NewEncoder(w).Encode(out)
}

func (f *Fake) get(w http.ResponseWriter, r *http.Request, id string) {
	q := r.URL.Query()
	ff := f.files[id]
	if !visible(ff, q) {
		notFound(w, id)
		return
	}
	if first(q, "alt") != "media" {
		f.gets++
		json.NewEncoder(w).Encode(render(ff, first(q, "fields")))
		return
	}
	if strings.HasPrefix(ff.mime, "application/vnd.google-apps.") {
		googleError(w, http.StatusForbidden, "global", "fileNotDownloadable",
			"Only files with binary content can be downloaded. Use Export with Docs Editors files. "+VendorText)
		return
	}
	w.Header().Set("Content-Type", ff.mime)
	w.Header().Set("Content-Length", strconv.Itoa(len(ff.content)))
	f.write(w, id, ff.content)
}

// write sends body, counting what the connector read: the lock is let go
// meanwhile, so that a slow reader does not stall the fake.
func (f *Fake) write(w http.ResponseWriter, id string, body []byte) {
	f.mu.Unlock()
	defer f.mu.Lock()
	for len(body) > 0 {
		n, err := w.Write(body[:min(len(body), 32<<10)])
		f.mu.Lock()
		f.served[id] += int64(n)
		f.mu.Unlock()
		if err != nil {
			return
		}
		body = body[n:]
	}
}

func (f *Fake) export(w http.ResponseWriter, r *http.Request, id string) {
	q := r.URL.Query()
	ff := f.files[id] // files.export has no supportsAllDrives
	if ff == nil {
		notFound(w, id)
		return
	}
	formats, ok := fakeExports[ff.mime]
	switch {
	case !ok:
		googleError(w, http.StatusForbidden, "global", "fileNotExportable", "Export only supports Docs Editors files. "+VendorText)
		return
	case !slices.Contains(formats, first(q, "mimeType")):
		googleError(w, http.StatusBadRequest, "global", "badRequest", "The requested conversion is not supported. "+VendorText)
		return
	case len(ff.content) > f.exportLimit:
		googleError(w, http.StatusForbidden, "global", "exportSizeLimitExceeded", "This file is too large to be exported. "+VendorText)
		return
	}
	w.Header().Set("Content-Type", first(q, "mimeType"))
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush() // chunked, as Drive's exports: no Content-Length
	f.write(w, id, ff.content)
}

func (f *Fake) changes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	start, err := strconv.Atoi(first(q, "pageToken"))
	if err != nil || start < 1 || start > len(f.log)+1 {
		invalid(w, "pageToken")
		return
	}
	n, ok := pageSizeParam(w, q)
	if !ok {
		return
	}
	driveID, all := first(q, "driveId"), first(q, "includeItemsFromAllDrives") == "true"
	if driveID != "" && (!f.drives[driveID] || first(q, "supportsAllDrives") != "true") {
		invalid(w, "driveId")
		return
	}
	fields := first(q, "fields")
	want := func(k string) bool { return fields == "" || strings.Contains(fields, k) }
	changes := []map[string]any{}
	i := start - 1
	for ; i < len(f.log) && len(changes) < n; i++ {
		c := f.log[i]
		at := c.at.Format("2006-01-02T15:04:05.000Z")
		if c.drive != "" { // a shared drive's own change
			if driveID == "" && all {
				changes = append(changes, map[string]any{"kind": "drive#change", "changeType": "drive", "driveId": c.drive, "removed": false, "time": at})
			}
			continue
		}
		ff := f.files[c.fileID]
		switch {
		case ff == nil:
		case driveID != "" && c.left == driveID && ff.drive != driveID:
			ff = nil // gone from this drive's view
		case (driveID != "" && ff.drive != driveID) || (ff.drive != "" && !all):
			continue
		}
		ch := map[string]any{"kind": "drive#change", "changeType": "file", "fileId": c.fileID, "time": at, "removed": ff == nil}
		if ff != nil {
			ch["file"] = render(ff, fields)
			if ff.drive != "" {
				ch["driveId"] = ff.drive
			}
		}
		changes = append(changes, ch)
	}
	out := map[string]any{"kind": "drive#changeList", "changes": changes}
	if i < len(f.log) {
		if want("nextPageToken") {
			out["nextPageToken"] = strconv.Itoa(i + 1)
		}
	} else if want("newStartPageToken") {
		out["newStartPageToken"] = strconv.Itoa(len(f.log) + 1)
	}
	json.NewEncoder(w).Encode(out)
}
