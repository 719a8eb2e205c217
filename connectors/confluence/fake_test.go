package confluence_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/confluence"
	"github.com/apiaryhq/apiary/connectors/connectortest"
	"github.com/apiaryhq/apiary/connectors/rest"
)

// fake is a stateful Go fake of the part of Confluence Cloud's REST API the
// connector uses, answering as Confluence does:
//
//   - v2 GET /wiki/api/v2/spaces?keys=…, GET /wiki/api/v2/pages and
//     GET /wiki/api/v2/spaces/{id}/pages (status, id, limit, cursor, sort,
//     body-format; comma-separated lists; status defaults to current and
//     archived), with cursor pagination in the Link header (rel="next" and
//     rel="base") and in _links.next; GET /wiki/api/v2/pages/{id}
//     (body-format=storage; a trashed page answers with its status, a
//     purged one 404). A parameter it does not know is a 400.
//   - v1 GET /wiki/rest/api/content/search: CQL of exactly the connector's
//     shape, type=page [AND space="KEY"] AND lastmodified>="yyyy/MM/dd
//     HH:mm" ORDER BY lastmodified, its date read in the site's time zone
//     (zone, UTC-8), current pages only (CQL does not search the trash);
//     version only with expand=version; cursor pagination in _links.next
//     (relative to /wiki, as v1 writes it). Any other query is a 400 whose
//     message quotes the query, as Confluence's does.
//   - Error bodies: v2's {"errors":[…]}, v1's {"statusCode":…,"message":…},
//     the gateway's 401 {"code":401,"message":"Unauthorized"}.
//   - A Bearer check; 429s injected with Retry-After and X-RateLimit-Reset;
//     the bytes written per page fetched (Served).
//
// Its clock is its own: it starts at clock and moves five minutes at each
// write (a put, an edit, a trash), as the time between a sync's edits, and
// every answer's Date is that clock. Moving a page to the trash makes no
// new version, as in Confluence.
type fake struct {
	srv *httptest.Server

	mu        sync.Mutex
	token     string
	expired   bool
	clock     time.Time
	zone      *time.Location
	seq       int
	spaces    []*fakeSpace
	pages     map[string]*fakePage
	limits    []time.Duration
	served    map[string]int64
	cql       []string // the CQL queries answered
	requests  []string // "GET path" of every request
	noDate    bool     // answer without a Date header
	foreign   bool     // next links to another origin
	noLink    bool     // v2 listings without a Link header
	noNext    bool     // v2 listings without _links.next
	refuseCQL bool     // refuse every CQL query
	chunked   bool     // answer without Content-Length
}

type fakeSpace struct{ id, key, name string }

type fakePage struct {
	id, spaceID, title, status string
	version                    int
	when                       time.Time // the version's time
	created                    time.Time
	body                       string // storage format
}

const fakeToken = "fake-oauth-access-token"

func newFake(t *testing.T) *fake {
	f := &fake{
		token:  fakeToken,
		clock:  time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC),
		zone:   time.FixedZone("PST", -8*3600),
		seq:    4521000,
		pages:  map[string]*fakePage{},
		served: map[string]int64{},
	}
	f.spaces = []*fakeSpace{{id: "98305", key: "ENG", name: "Engineering"}, {id: "98306", key: "OPS", name: "Operations"}}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) space(key string) *fakeSpace {
	for _, s := range f.spaces {
		if s.key == key {
			return s
		}
	}
	return nil
}

// put creates the page titled title in the space of key, or makes a new
// version of the current one of that title, and returns its id.
func (f *fake) put(key, title, storage string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = f.clock.Add(5 * time.Minute)
	sp := f.space(key)
	for _, p := range f.pages {
		if p.spaceID == sp.id && p.title == title && p.status == "current" {
			p.version++
			p.when, p.body = f.clock, storage
			return p.id
		}
	}
	f.seq++
	id := strconv.Itoa(f.seq)
	f.pages[id] = &fakePage{id: id, spaceID: sp.id, title: title, status: "current", version: 1, when: f.clock, created: f.clock, body: storage}
	return id
}

// putN puts (or edits) n pages titled "prefix 0"… and returns their ids.
func (f *fake) putN(key, prefix string, n int) []string {
	var ids []string
	for i := range n {
		ids = append(ids, f.put(key, fmt.Sprintf("%s %d", prefix, i), fmt.Sprintf("<p>%s %d, version %d</p>", prefix, i, f.seq)))
	}
	return ids
}

// setStatus moves a page to the trash ("trashed") or the archive
// ("archived"); "" purges it.
func (f *fake) setStatus(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = f.clock.Add(5 * time.Minute)
	if status == "" {
		delete(f.pages, id)
	} else if p := f.pages[id]; p != nil {
		p.status = status
	}
}

// answer is what the fake writes, built under its lock.
type answer struct {
	status int
	header http.Header
	body   []byte
	page   string // the page whose content this is, for Served
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	a := f.answer(r)
	chunked := f.chunked
	if f.noDate {
		a.header["Date"] = nil // net/http writes none then
	} else {
		a.header.Set("Date", f.clock.Format(http.TimeFormat))
	}
	f.mu.Unlock()
	for k, v := range a.header {
		w.Header()[k] = v
	}
	if !chunked {
		w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	}
	w.WriteHeader(a.status)
	for b := a.body; len(b) > 0; {
		n, err := w.Write(b[:min(len(b), 32<<10)])
		if a.page != "" {
			f.mu.Lock()
			f.served[a.page] += int64(n)
			f.mu.Unlock()
		}
		if err != nil {
			return
		}
		b = b[n:]
	}
}

func jsonAnswer(status int, v any) answer {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return answer{status: status, header: http.Header{"Content-Type": {"application/json;charset=UTF-8"}}, body: b}
}

// v2Error is v2's error body.
func v2Error(status int, code, title string) answer {
	return jsonAnswer(status, map[string]any{"errors": []map[string]any{{"status": status, "code": code, "title": title, "detail": nil}}})
}

func (f *fake) answer(r *http.Request) answer {
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	if len(f.limits) > 0 {
		d := f.limits[0]
		f.limits = f.limits[1:]
		a := v2Error(http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "Rate limit exceeded")
		a.header.Set("Retry-After", strconv.Itoa(int(d/time.Second)))
		a.header.Set("X-RateLimit-Reset", f.clock.Add(d).Format("2006-01-02T15:04Z"))
		return a
	}
	if f.expired || r.Header.Get("Authorization") != "Bearer "+f.token {
		return jsonAnswer(http.StatusUnauthorized, map[string]any{"code": 401, "message": "Unauthorized"})
	}
	if r.Method != http.MethodGet {
		return v2Error(http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "Method Not Allowed")
	}
	p := r.URL.Path
	switch {
	case p == "/wiki/api/v2/spaces":
		return f.spacesAnswer(r)
	case p == "/wiki/api/v2/pages":
		return f.pagesAnswer(r, "")
	case strings.HasPrefix(p, "/wiki/api/v2/spaces/") && strings.HasSuffix(p, "/pages"):
		id := strings.TrimSuffix(strings.TrimPrefix(p, "/wiki/api/v2/spaces/"), "/pages")
		if !slices.ContainsFunc(f.spaces, func(s *fakeSpace) bool { return s.id == id }) {
			return v2Error(http.StatusNotFound, "NOT_FOUND", "Space not found")
		}
		return f.pagesAnswer(r, id)
	case strings.HasPrefix(p, "/wiki/api/v2/pages/"):
		return f.pageAnswer(r, strings.TrimPrefix(p, "/wiki/api/v2/pages/"))
	case p == "/wiki/rest/api/content/search":
		return f.searchAnswer(r)
	}
	return v2Error(http.StatusNotFound, "NOT_FOUND", "Not Found")
}

// checkParams refuses a query parameter not in allowed.
func checkParams(q url.Values, allowed ...string) *answer {
	for k := range q {
		if !slices.Contains(allowed, k) {
			a := v2Error(http.StatusBadRequest, "INVALID_REQUEST_PARAMETER", "Unknown parameter "+k)
			return &a
		}
	}
	return nil
}

func (f *fake) links(r *http.Request, cursor string) (http.Header, map[string]any) {
	links := map[string]any{"base": f.srv.URL + "/wiki"}
	h := http.Header{}
	if cursor != "" {
		q := r.URL.Query()
		q.Set("cursor", cursor)
		next := r.URL.Path + "?" + q.Encode()
		if f.foreign {
			next = "https://elsewhere.example" + next
		}
		if !f.noNext {
			links["next"] = next
		}
		if !f.noLink {
			h.Set("Link", fmt.Sprintf(`<%s>; rel="next", <%s/wiki>; rel="base"`, next, f.srv.URL))
		}
	}
	return h, links
}

func (f *fake) spacesAnswer(r *http.Request) answer {
	q := r.URL.Query()
	if a := checkParams(q, "keys", "limit", "cursor"); a != nil {
		return *a
	}
	keys := strings.Split(q.Get("keys"), ",")
	var results []map[string]any
	for _, s := range f.spaces {
		if q.Get("keys") == "" || slices.Contains(keys, s.key) {
			results = append(results, map[string]any{
				"id": s.id, "key": s.key, "name": s.name, "type": "global", "status": "current",
				"authorId": "557058:aa11", "createdAt": "2024-02-01T10:00:00.000Z", "homepageId": "98310",
				"_links": map[string]any{"webui": "/spaces/" + s.key},
			})
		}
	}
	h, links := f.links(r, "")
	a := jsonAnswer(http.StatusOK, map[string]any{"results": results, "_links": links})
	maps(a.header, h)
	return a
}

func maps(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

func (f *fake) pageJSON(p *fakePage, body bool) map[string]any {
	m := map[string]any{
		"id": p.id, "status": p.status, "title": p.title, "spaceId": p.spaceID,
		"parentId": "98310", "parentType": "page", "position": 4242, "authorId": "557058:aa11",
		"ownerId": "557058:aa11", "lastOwnerId": nil, "createdAt": stamp(p.created),
		"version": map[string]any{
			"createdAt": stamp(p.when), "message": "", "number": p.version, "minorEdit": false, "authorId": "557058:aa11",
		},
		"body": map[string]any{},
		"_links": map[string]any{
			"webui": "/spaces/ENG/pages/" + p.id, "editui": "/pages/resumedraft.action?draftId=" + p.id, "tinyui": "/x/" + p.id,
		},
	}
	if body {
		m["body"] = map[string]any{"storage": map[string]any{"representation": "storage", "value": p.body}}
	}
	return m
}

func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeCursor(c string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	return string(b), err == nil
}

func (f *fake) pagesAnswer(r *http.Request, spaceID string) answer {
	q := r.URL.Query()
	if a := checkParams(q, "status", "id", "limit", "cursor", "sort", "body-format", "title"); a != nil {
		return *a
	}
	statuses := []string{"current", "archived"}
	if s := q.Get("status"); s != "" {
		statuses = strings.Split(s, ",")
		for _, st := range statuses {
			if !slices.Contains([]string{"current", "archived", "trashed", "deleted"}, st) {
				return v2Error(http.StatusBadRequest, "INVALID_REQUEST_PARAMETER", "Invalid status")
			}
		}
	}
	var ids []string
	if s := q.Get("id"); s != "" {
		ids = strings.Split(s, ",")
	}
	bf := q.Get("body-format")
	if bf != "" && bf != "storage" && bf != "atlas_doc_format" {
		return v2Error(http.StatusBadRequest, "INVALID_REQUEST_PARAMETER", "Invalid body-format")
	}
	limit := 25
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 250 {
			return v2Error(http.StatusBadRequest, "INVALID_REQUEST_PARAMETER", "Invalid limit")
		}
		limit = n
	}
	var list []*fakePage
	for _, p := range f.pages {
		if (spaceID == "" || p.spaceID == spaceID) && slices.Contains(statuses, p.status) && (ids == nil || slices.Contains(ids, p.id)) {
			list = append(list, p)
		}
	}
	byID := func(a, b *fakePage) int {
		x, _ := strconv.Atoi(a.id)
		y, _ := strconv.Atoi(b.id)
		return x - y
	}
	switch q.Get("sort") {
	case "", "id":
		slices.SortFunc(list, byID)
	case "-modified-date":
		if q.Get("cursor") != "" {
			return v2Error(http.StatusBadRequest, "INVALID_REQUEST_PARAMETER", "The fake pages no modified-date sort")
		}
		slices.SortFunc(list, func(a, b *fakePage) int {
			if c := b.when.Compare(a.when); c != 0 {
				return c
			}
			return byID(b, a)
		})
	default:
		return v2Error(http.StatusBadRequest, "INVALID_REQUEST_PARAMETER", "Invalid sort")
	}
	if c := q.Get("cursor"); c != "" {
		after, ok := decodeCursor(c)
		n, err := strconv.Atoi(strings.TrimPrefix(after, "after:"))
		if !ok || !strings.HasPrefix(after, "after:") || err != nil {
			return v2Error(http.StatusBadRequest, "INVALID_REQUEST_PARAMETER", "Invalid cursor")
		}
		list = slices.DeleteFunc(list, func(p *fakePage) bool { id, _ := strconv.Atoi(p.id); return id <= n })
	}
	next := ""
	if len(list) > limit {
		list = list[:limit]
		next = encodeCursor("after:" + list[limit-1].id)
	}
	results := []map[string]any{}
	for _, p := range list {
		results = append(results, f.pageJSON(p, bf == "storage"))
	}
	h, links := f.links(r, next)
	a := jsonAnswer(http.StatusOK, map[string]any{"results": results, "_links": links})
	maps(a.header, h)
	return a
}

func (f *fake) pageAnswer(r *http.Request, id string) answer {
	q := r.URL.Query()
	if a := checkParams(q, "body-format", "version", "get-draft"); a != nil {
		return *a
	}
	p := f.pages[id]
	if p == nil {
		return v2Error(http.StatusNotFound, "NOT_FOUND", "Not Found")
	}
	a := jsonAnswer(http.StatusOK, f.pageJSON(p, q.Get("body-format") == "storage"))
	a.page = id
	return a
}

// cqlShape is the one CQL query shape the fake answers: the connector's.
var cqlShape = regexp.MustCompile(`^type=page(?: AND space="([^"]+)")? AND lastmodified>="(\d{4}/\d{2}/\d{2} \d{2}:\d{2})" ORDER BY lastmodified$`)

func (f *fake) searchAnswer(r *http.Request) answer {
	q := r.URL.Query()
	if a := checkParams(q, "cql", "limit", "expand", "cursor", "next", "start"); a != nil {
		return *a
	}
	cql := q.Get("cql")
	m := cqlShape.FindStringSubmatch(cql)
	var from time.Time
	var err error
	if m != nil {
		from, err = time.ParseInLocation("2006/01/02 15:04", m[2], f.zone)
	}
	if m == nil || err != nil || f.refuseCQL {
		return jsonAnswer(http.StatusBadRequest, map[string]any{
			"statusCode": 400,
			"data":       map[string]any{"authorized": true, "valid": false, "errors": []any{}, "successful": false},
			"message":    "com.atlassian.confluence.api.service.exceptions.BadRequestException: Could not parse cql : " + cql,
		})
	}
	f.cql = append(f.cql, cql)
	spaceID := ""
	if m[1] != "" {
		spaceID = "none"
		if s := f.space(m[1]); s != nil {
			spaceID = s.id
		}
	}
	var list []*fakePage
	for _, p := range f.pages {
		if p.status == "current" && (spaceID == "" || p.spaceID == spaceID) && !p.when.Before(from) {
			list = append(list, p)
		}
	}
	slices.SortFunc(list, func(a, b *fakePage) int {
		if c := a.when.Compare(b.when); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	limit := 25
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 {
			return jsonAnswer(http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "Invalid limit"})
		}
		limit = min(limit, 200)
	}
	start := 0
	if c := q.Get("cursor"); c != "" {
		s, ok := decodeCursor(c)
		n, err := strconv.Atoi(strings.TrimPrefix(s, "_f_"))
		if !ok || err != nil || n < 0 {
			return jsonAnswer(http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "Invalid cursor"})
		}
		start = min(n, len(list))
	}
	page := list[start:]
	links := map[string]any{"base": f.srv.URL + "/wiki", "context": "/wiki", "self": f.srv.URL + "/wiki/rest/api/content/search"}
	if len(page) > limit {
		page = page[:limit]
		nq := url.Values{"next": {"true"}, "cursor": {encodeCursor("_f_" + strconv.Itoa(start+limit))}, "limit": {strconv.Itoa(limit)}, "cql": {cql}}
		if q.Get("expand") != "" {
			nq.Set("expand", q.Get("expand"))
		}
		links["next"] = "/rest/api/content/search?" + nq.Encode()
	}
	results := []map[string]any{}
	for _, p := range page {
		res := map[string]any{
			"id": p.id, "type": "page", "status": p.status, "title": p.title,
			"_links":      map[string]any{"webui": "/spaces/ENG/pages/" + p.id, "self": f.srv.URL + "/wiki/rest/api/content/" + p.id},
			"_expandable": map[string]any{"container": "/rest/api/space/ENG", "space": "/rest/api/space/ENG"},
		}
		if slices.Contains(strings.Split(q.Get("expand"), ","), "version") {
			res["version"] = map[string]any{
				"by":   map[string]any{"type": "known", "accountId": "557058:aa11", "displayName": "Ada"},
				"when": stamp(p.when), "friendlyWhen": "just a moment ago", "message": "", "number": p.version, "minorEdit": false,
			}
		} else {
			res["_expandable"].(map[string]any)["version"] = ""
		}
		results = append(results, res)
	}
	return jsonAnswer(http.StatusOK, map[string]any{
		"results": results, "start": start, "limit": limit, "size": len(results),
		"cqlQuery": cql, "searchDuration": 17, "_links": links,
	})
}

// harness runs connectortest on the fake, for a source of the whole site
// or of one space (the other space holds a page that must not be listed).
type harness struct {
	f        *fake
	location string
}

const (
	pageSize = 4
	maxBytes = 64 << 10
)

func newHarness(t *testing.T, location string) *harness {
	h := &harness{f: newFake(t), location: location}
	if location != "" && location != "all" {
		h.f.put("OPS", "Elsewhere", "<p>another space</p>")
	}
	return h
}

func (h *harness) conn(t *testing.T, cfg confluence.Config) *confluence.Connector {
	cfg.BaseURL, cfg.AllowPrivate = h.f.srv.URL, true
	if cfg.PageSize == 0 {
		cfg.PageSize = pageSize
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = maxBytes
	}
	c, err := confluence.New(cfg, rest.Static(apiary.NewSecret(fakeToken)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (h *harness) Connector() connectors.Connector {
	c, err := confluence.New(confluence.Config{BaseURL: h.f.srv.URL, AllowPrivate: true, PageSize: pageSize, MaxBytes: maxBytes},
		rest.Static(apiary.NewSecret(fakeToken)))
	if err != nil {
		panic(err)
	}
	return c
}

func (h *harness) Source() connectors.Source { return connectors.Source{Location: h.location} }
func (h *harness) PageSize() int             { return pageSize }
func (h *harness) MaxBytes() int64           { return maxBytes }

func (h *harness) Put(t *testing.T, name string, content []byte) string {
	return h.f.put("ENG", name, "<p>"+html.EscapeString(string(content))+"</p>")
}

func (h *harness) Delete(t *testing.T, id string) { h.f.setStatus(id, "trashed") }

func (h *harness) ExpireCredential(t *testing.T) bool {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.expired = true
	return true
}

func (h *harness) RateLimit(t *testing.T, d time.Duration) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.limits = append(h.f.limits, d)
}

func (h *harness) Served(id string) int64 {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return h.f.served[id]
}

func TestConformance(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, "") })
}

func TestConformanceSpace(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, "space:ENG") })
}

// TextOnly: Confluence holds text, served as JSON (connectortest.TextHarness).
func (h *harness) TextOnly() bool { return true }
