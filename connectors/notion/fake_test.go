package notion_test

import (
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

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/connectortest"
	"github.com/apiaryhq/apiary/connectors/notion"
	"github.com/apiaryhq/apiary/connectors/rest"
)

// fakeNotion is a stateful fake of the part of Notion's REST API (version
// 2022-06-28) the connector reads: POST /v1/search (filter by object, sort
// by last_edited_time, cursors, page_size at most 100), GET /v1/pages/{id}
// (archived and trashed pages are answered, flagged) and GET
// /v1/blocks/{id}/children (paged, 100 at most). Times are rounded down to
// the minute, as Notion's are; an edit stamps the fake's clock. Every
// request must name Notion-Version (400 missing_version) and the bearer
// token (401 unauthorized); errors are Notion's JSON. Faults can be queued
// (429 rate_limited, 529 overloaded, with Retry-After), and the bytes of
// block answers are counted per page.
type fakeNotion struct {
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	expired  bool
	clock    time.Time
	seq      int
	pages    map[string]*fpage
	blocks   map[string]*fblock
	faults   []fault
	served   map[string]int64 // block answers' bytes, by page id
	versions map[string]int   // Notion-Version headers seen
	requests []string         // "METHOD /path" of each request answered
}

type fpage struct {
	id, title string
	titleProp string // "title", or a database's title column ("Name")
	parent    string // a page id; "" is the workspace
	database  string // a database id, for a database row
	created   time.Time
	edited    time.Time
	archived  bool
	inTrash   bool
	children  []string
}

type fblock struct {
	id, typ  string
	data     map[string]any
	page     string // the page the block is on
	parent   string // its parent block or page
	created  time.Time
	edited   time.Time
	children []string
}

type fault struct {
	status int
	code   string
	after  time.Duration
	path   string // answer the next request whose path has it; "" any
}

func newFake(t *testing.T) *fakeNotion {
	f := &fakeNotion{
		token:    "secret_canaryINTEGRATIONtoken",
		clock:    time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC),
		pages:    map[string]*fpage{},
		blocks:   map[string]*fblock{},
		served:   map[string]int64{},
		versions: map[string]int{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// connector returns a connector to the fake; cfg's zero fields are the
// test defaults.
func (f *fakeNotion) connector(t *testing.T, cfg notion.Config) *notion.Connector {
	cfg.BaseURL = f.srv.URL + "/v1"
	cfg.AllowPrivate = true
	cfg.Now = f.now
	c, err := notion.New(cfg, rest.Static(apiary.NewSecret(f.token)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeNotion) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

// advance moves the fake's clock on.
func (f *fakeNotion) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = f.clock.Add(d)
}

// newID is a fresh Notion id, in the dashed form.
func (f *fakeNotion) newID() string {
	f.seq++
	h := fmt.Sprintf("%08x%024x", 0x5c6a28b7+f.seq, f.seq*7919)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// addPage adds a page titled title under parent ("" is the workspace; a
// page id makes it a child page, a child_page block of its parent).
func (f *fakeNotion) addPage(title, parent string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := &fpage{id: f.newID(), title: title, titleProp: "title", parent: parent, created: f.clock, edited: f.clock}
	f.pages[p.id] = p
	if pp := f.pages[parent]; pp != nil {
		pp.children = append(pp.children, p.id)
		f.touch(pp.id)
	}
	return p.id
}

// addRow adds a database row whose title column is "Name".
func (f *fakeNotion) addRow(title string) string {
	id := f.addPage(title, "")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pages[id].titleProp, f.pages[id].database = "Name", "8e2c2b76-ba1e-4d6f-8a06-0f8c5d4e7a91"
	return id
}

// addBlock appends a block of type typ with data under parent (a page or a
// block) and returns its id.
func (f *fakeNotion) addBlock(parent, typ string, data map[string]any) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := &fblock{id: f.newID(), typ: typ, data: data, parent: parent, created: f.clock, edited: f.clock}
	if p := f.pages[parent]; p != nil {
		b.page = p.id
		p.children = append(p.children, b.id)
	} else {
		pb := f.blocks[parent]
		b.page = pb.page
		pb.children = append(pb.children, b.id)
	}
	f.blocks[b.id] = b
	f.touch(b.page)
	return b.id
}

// touch stamps page id as edited now.
func (f *fakeNotion) touch(id string) {
	if p := f.pages[id]; p != nil {
		p.edited = f.clock
	}
}

// put sets the content of the page titled name (made if there is none)
// to content, as paragraphs of at most 2000 characters (Notion's cap on a
// text object): a minute after the last edit.
func (f *fakeNotion) put(name, parent string, content []byte) string {
	f.advance(time.Minute)
	f.mu.Lock()
	id := ""
	for _, p := range f.pages {
		if p.title == name && !p.inTrash && p.parent == parent {
			id = p.id
			p.children = nil
			f.touch(id)
		}
	}
	f.mu.Unlock()
	if id == "" {
		id = f.addPage(name, parent)
	}
	runes := []rune(string(content)) // invalid UTF-8 is U+FFFD, as in JSON
	for len(runes) > 0 {
		n := min(len(runes), 2000)
		f.addBlock(id, "paragraph", map[string]any{"rich_text": []any{text(string(runes[:n]))}, "color": "default"})
		runes = runes[n:]
	}
	return id
}

// trash moves page id to the trash.
func (f *fakeNotion) trash(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pages[id]
	p.archived, p.inTrash = true, true
	f.clock = f.clock.Add(time.Minute)
	p.edited = f.clock
}

// fail makes the next answer an error of status and code, with
// Retry-After.
func (f *fakeNotion) fail(status int, code string, after time.Duration) {
	f.failOn("", status, code, after)
}

// failOn makes the next answer to a path holding path an error.
func (f *fakeNotion) failOn(path string, status int, code string, after time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fault{status: status, code: code, after: after, path: path})
}

// fault takes the fault to answer r with, if any.
func (f *fakeNotion) fault(r *http.Request) (fault, bool) {
	for i, ft := range f.faults {
		if strings.Contains(r.URL.Path, ft.path) {
			f.faults = slices.Delete(f.faults, i, i+1)
			return ft, true
		}
	}
	return fault{}, false
}

// text is a plain rich text object.
func text(s string) map[string]any { return styled(s, nil, "") }

// styled is a rich text object with annotations (bold, italic, code,
// strikethrough) and a link.
func styled(s string, marks []string, link string) map[string]any {
	ann := map[string]any{"bold": false, "italic": false, "strikethrough": false, "underline": false, "code": false, "color": "default"}
	for _, m := range marks {
		ann[m] = true
	}
	var l, href any
	if link != "" {
		l, href = map[string]any{"url": link}, link
	}
	return map[string]any{"type": "text", "text": map[string]any{"content": s, "link": l}, "annotations": ann, "plain_text": s, "href": href}
}

func stamp(t time.Time) string { return t.Truncate(time.Minute).Format("2006-01-02T15:04:05.000Z") }

var user = map[string]any{"object": "user", "id": "3a1d4d36-5b2e-4d34-9f1c-2f1e2c9a7f10"}

func (f *fakeNotion) pageJSON(p *fpage) map[string]any {
	parent := map[string]any{"type": "workspace", "workspace": true}
	switch {
	case p.database != "":
		parent = map[string]any{"type": "database_id", "database_id": p.database}
	case p.parent != "":
		parent = map[string]any{"type": "page_id", "page_id": p.parent}
	}
	props := map[string]any{p.titleProp: map[string]any{"id": "title", "type": "title", "title": []any{text(p.title)}}}
	if p.database != "" {
		props["Status"] = map[string]any{"id": "%3DrLx", "type": "select", "select": map[string]any{"id": "1", "name": "Done", "color": "green"}}
	}
	return map[string]any{
		"object": "page", "id": p.id,
		"created_time": stamp(p.created), "last_edited_time": stamp(p.edited),
		"created_by": user, "last_edited_by": user,
		"cover": nil, "icon": nil, "parent": parent,
		"archived": p.archived, "in_trash": p.inTrash,
		"properties": props,
		"url":        "https://www.notion.so/" + strings.ReplaceAll(p.title, " ", "-") + "-" + strings.ReplaceAll(p.id, "-", ""),
		"public_url": nil,
	}
}

func (f *fakeNotion) blockJSON(id string) map[string]any {
	if p := f.pages[id]; p != nil { // a child page, as a block of its parent
		return map[string]any{
			"object": "block", "id": p.id, "parent": map[string]any{"type": "page_id", "page_id": p.parent},
			"created_time": stamp(p.created), "last_edited_time": stamp(p.edited),
			"created_by": user, "last_edited_by": user,
			"has_children": len(p.children) > 0, "archived": p.archived, "in_trash": p.inTrash,
			"type": "child_page", "child_page": map[string]any{"title": p.title},
		}
	}
	b := f.blocks[id]
	parent := map[string]any{"type": "block_id", "block_id": b.parent}
	if b.parent == b.page {
		parent = map[string]any{"type": "page_id", "page_id": b.page}
	}
	return map[string]any{
		"object": "block", "id": b.id, "parent": parent,
		"created_time": stamp(b.created), "last_edited_time": stamp(b.edited),
		"created_by": user, "last_edited_by": user,
		"has_children": len(b.children) > 0, "archived": false, "in_trash": false,
		"type": b.typ, b.typ: b.data,
	}
}

// notionError writes Notion's error JSON.
func notionError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"object": "error", "status": status, "code": code, "message": msg, "request_id": "9b2f3e0c-1d4a-4f6e-8c5b-7a1e2d3c4b5a"})
}

func (f *fakeNotion) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	v := r.Header.Get("Notion-Version")
	f.versions[v]++
	switch {
	case v == "":
		notionError(w, http.StatusBadRequest, "missing_version", "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.")
		return
	case v != "2022-06-28":
		notionError(w, http.StatusBadRequest, "validation_error", "Notion-Version header failed validation: the fake serves 2022-06-28 only.")
		return
	case f.expired || r.Header.Get("Authorization") != "Bearer "+f.token:
		notionError(w, http.StatusUnauthorized, "unauthorized", "API token is invalid.")
		return
	}
	if ft, ok := f.fault(r); ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(ft.after/time.Second)))
		notionError(w, ft.status, ft.code, "You have been rate limited. Please try again in a few minutes.")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	switch {
	case r.Method == http.MethodPost && path == "search":
		f.search(w, r)
	case r.Method == http.MethodGet && strings.HasPrefix(path, "pages/"):
		p := f.pages[strings.TrimPrefix(path, "pages/")]
		if p == nil {
			notionError(w, http.StatusNotFound, "object_not_found", "Could not find page with ID: "+strings.TrimPrefix(path, "pages/")+". Make sure the relevant pages and databases are shared with your integration.")
			return
		}
		writeJSON(w, f.pageJSON(p))
	case r.Method == http.MethodGet && strings.HasPrefix(path, "blocks/") && strings.HasSuffix(path, "/children"):
		f.children(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "blocks/"), "/children"))
	default:
		notionError(w, http.StatusBadRequest, "invalid_request_url", "Invalid request URL.")
	}
}

func writeJSON(w http.ResponseWriter, v any) int {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(b)
	return len(b)
}

// pageSize reads page_size: 100 by default, 1 to 100.
func pageSize(n int) (int, bool) {
	if n == 0 {
		return 100, true
	}
	return n, n >= 1 && n <= 100
}

// window is the page of ids from the cursor (an id of the list) on.
func window(ids []string, start string, size int) (page []string, next any, ok bool) {
	from := 0
	if start != "" {
		from = slices.Index(ids, start)
		if from < 0 {
			return nil, nil, false
		}
	}
	end := min(len(ids), from+size)
	if end < len(ids) {
		next = ids[end]
	}
	return ids[from:end], next, true
}

func (f *fakeNotion) search(w http.ResponseWriter, r *http.Request) {
	var q struct {
		Query  string `json:"query"`
		Filter *struct {
			Property string `json:"property"`
			Value    string `json:"value"`
		} `json:"filter"`
		Sort *struct {
			Direction string `json:"direction"`
			Timestamp string `json:"timestamp"`
		} `json:"sort"`
		StartCursor string `json:"start_cursor"`
		PageSize    int    `json:"page_size"`
	}
	if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
		notionError(w, http.StatusBadRequest, "invalid_json", "Error parsing JSON body.")
		return
	}
	size, ok := pageSize(q.PageSize)
	if !ok || (q.Filter != nil && (q.Filter.Property != "object" || (q.Filter.Value != "page" && q.Filter.Value != "database"))) ||
		(q.Sort != nil && q.Sort.Timestamp != "last_edited_time") {
		notionError(w, http.StatusBadRequest, "validation_error", "body failed validation.")
		return
	}
	var ids []string
	if q.Filter == nil || q.Filter.Value == "page" {
		for _, p := range f.pages {
			if !p.archived && !p.inTrash && strings.Contains(strings.ToLower(p.title), strings.ToLower(q.Query)) {
				ids = append(ids, p.id)
			}
		}
	}
	desc := q.Sort == nil || q.Sort.Direction != "ascending"
	slices.SortFunc(ids, func(a, b string) int {
		ta, tb := f.pages[a].edited.Truncate(time.Minute), f.pages[b].edited.Truncate(time.Minute)
		if c := ta.Compare(tb); c != 0 {
			if desc {
				return -c
			}
			return c
		}
		return strings.Compare(a, b)
	})
	page, next, ok := window(ids, q.StartCursor, size)
	if !ok {
		notionError(w, http.StatusBadRequest, "validation_error", "body failed validation: body.start_cursor should be a valid cursor.")
		return
	}
	results := []any{}
	for _, id := range page {
		results = append(results, f.pageJSON(f.pages[id]))
	}
	writeJSON(w, map[string]any{"object": "list", "results": results, "next_cursor": next, "has_more": next != nil,
		"type": "page_or_database", "page_or_database": map[string]any{}, "request_id": "5f1c7a3e-9d2b-4c8a-b6e4-2a7d9c1e3f50"})
}

func (f *fakeNotion) children(w http.ResponseWriter, r *http.Request, id string) {
	var kids []string
	pageID := id
	switch {
	case f.pages[id] != nil:
		kids = f.pages[id].children
	case f.blocks[id] != nil:
		kids, pageID = f.blocks[id].children, f.blocks[id].page
	default:
		notionError(w, http.StatusNotFound, "object_not_found", "Could not find block with ID: "+id+".")
		return
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("page_size"))
	size, ok := pageSize(n)
	if !ok {
		notionError(w, http.StatusBadRequest, "validation_error", "body failed validation: query.page_size should be ≤ 100.")
		return
	}
	var live []string
	for _, k := range kids {
		if p := f.pages[k]; p == nil || !p.inTrash {
			live = append(live, k)
		}
	}
	page, next, ok := window(live, r.URL.Query().Get("start_cursor"), size)
	if !ok {
		notionError(w, http.StatusBadRequest, "validation_error", "start_cursor provided is invalid.")
		return
	}
	results := []any{}
	for _, k := range page {
		results = append(results, f.blockJSON(k))
	}
	f.served[pageID] += int64(writeJSON(w, map[string]any{"object": "list", "results": results, "next_cursor": next, "has_more": next != nil,
		"type": "block", "block": map[string]any{}, "request_id": "0c4e8b2a-6f1d-4a9e-9b3c-5d7e1f2a4c68"}))
}

// harness runs the conformance suite on the fake: pages under the
// workspace listed with "all", or child pages of a root page listed with
// "page:<root>".
type harness struct {
	f    *fakeNotion
	conn *notion.Connector
	root string
}

const (
	testPageSize = 5
	testMaxBytes = 64 << 10
)

var _ connectortest.TextHarness = (*harness)(nil)

func newHarness(t *testing.T, tree bool) *harness {
	h := &harness{f: newFake(t)}
	if tree {
		h.root = h.f.addPage("Team space", "")
		h.f.addBlock(h.root, "paragraph", map[string]any{"rich_text": []any{text("The team's pages.")}})
	}
	h.conn = h.f.connector(t, notion.Config{PageSize: testPageSize, MaxBytes: testMaxBytes})
	return h
}

func (h *harness) Connector() connectors.Connector { return h.conn }

func (h *harness) Source() connectors.Source {
	if h.root != "" {
		return connectors.Source{Location: "page:" + h.root}
	}
	return connectors.Source{Location: "all"}
}

func (h *harness) PageSize() int   { return testPageSize }
func (h *harness) MaxBytes() int64 { return testMaxBytes }

func (h *harness) Put(t *testing.T, name string, content []byte) string {
	return h.f.put(name, h.root, content)
}

func (h *harness) Delete(t *testing.T, id string) { h.f.trash(id) }

func (h *harness) ExpireCredential(t *testing.T) bool {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.expired = true
	return true
}

func (h *harness) RateLimit(t *testing.T, d time.Duration) {
	h.f.fail(http.StatusTooManyRequests, "rate_limited", d)
}

func (h *harness) Served(id string) int64 {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return h.f.served[id]
}

// TextOnly: Notion holds text, served as JSON.
func (h *harness) TextOnly() bool { return true }

func TestConformance(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, false) })
}

func TestConformancePageTree(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, true) })
}
