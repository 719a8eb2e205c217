package graph_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary/connectors/graph"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeGraph is a stateful fake of the part of Microsoft Graph v1.0's drive
// API the connector uses, on two servers: the API (graph.microsoft.com)
// and a download host (a SharePoint front end) that serves content only to
// a request WITHOUT an Authorization header.
//
// The API answers GET /me/drive, /sites/{id}/drive, /drives/{id} (a drive),
// .../root/delta (the full enumeration, token=latest, a token's changes;
// $top; @odata.nextLink and @odata.deltaLink carrying opaque tokens with a
// change sequence; tombstones with the deleted facet; 410 resyncRequired
// for a token older than the change log kept), /drives/{d}/items/{id}
// (metadata) and /drives/{d}/items/{id}/content (302 to the download host,
// If-None-Match against cTag and eTag → 304), with Graph's JSON error
// bodies. It checks a bearer token with an expiry and can throttle (429
// with Retry-After).
type fakeGraph struct {
	api, dl *httptest.Server

	mu     sync.Mutex
	seq    int64 // the change sequence: every change takes the next number
	minSeq int64 // tokens from before it answer 410 resyncRequired
	drives map[string]*fakeDrive
	me     string            // the drive of /me/drive
	sites  map[string]string // site id → drive id
	tokens map[string]time.Time
	limits []time.Duration
	served map[string]int64 // content bytes written, by item ID
	authDL int              // download requests that carried Authorization
	clock  time.Time
	nextID int
	downl  map[string]string // tempauth → item ID, the live download URLs

	// Quirks the tests turn on.
	omitCTag   bool   // delta leaves cTag out (OneDrive for Business)
	ignoreTop  bool   // delta pages hold up to 3×$top entries
	foreignNxt string // the origin nextLinks name instead of the API's
	location   string // /content redirects here instead of the download host
	redirectDL string // the download host redirects here instead of serving
}

type fakeDrive struct {
	id    string
	root  string
	items map[string]*fakeItem
}

type fakeItem struct {
	id, name, parent string
	folder, pkg      bool
	body             []byte
	mime             string
	guid             string
	created, seq     int64 // the change numbers of its creation and last change
	cver, ever       int   // cTag and eTag revisions
	deleted          bool
	mod              time.Time
}

func newFakeGraph(t *testing.T) *fakeGraph {
	f := &fakeGraph{
		drives: map[string]*fakeDrive{},
		sites:  map[string]string{},
		tokens: map[string]time.Time{},
		served: map[string]int64{},
		downl:  map[string]string{},
		clock:  time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC),
	}
	f.api = httptest.NewServer(http.HandlerFunc(f.serveAPI))
	t.Cleanup(f.api.Close)
	f.dl = httptest.NewServer(http.HandlerFunc(f.serveDownload))
	t.Cleanup(f.dl.Close)
	f.me = f.addDrive()
	return f
}

// base is the API's root, as graph.Config.BaseURL.
func (f *fakeGraph) base() string { return f.api.URL + "/v1.0" }

// dlHost is the download host's host:port.
func (f *fakeGraph) dlHost() string { u, _ := url.Parse(f.dl.URL); return u.Host }

// newToken issues a bearer token valid for an hour.
func (f *fakeGraph) newToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := "EwB" + randHex(24)
	f.tokens[tok] = time.Now().Add(time.Hour)
	return tok
}

// expire makes every token expired.
func (f *fakeGraph) expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for tok := range f.tokens {
		f.tokens[tok] = time.Now().Add(-time.Minute)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (f *fakeGraph) guid() string {
	b := randHex(16)
	return strings.ToUpper(b[:8] + "-" + b[8:12] + "-" + b[12:16] + "-" + b[16:20] + "-" + b[20:])
}

// addDrive makes a drive with its root folder and returns its id, shaped
// like a business drive's ("b!" and 64 base64url characters).
func (f *fakeGraph) addDrive() string {
	b := make([]byte, 48)
	rand.Read(b)
	d := &fakeDrive{id: "b!" + base64.RawURLEncoding.EncodeToString(b), items: map[string]*fakeItem{}}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drives[d.id] = d
	root := f.newItem(d, "root", "", true)
	d.root = root.id
	return d.id
}

// addSite makes a site whose default library is a new drive.
func (f *fakeGraph) addSite() (site, drive string) {
	drive = f.addDrive()
	site = "contoso.sharepoint.com," + strings.ToLower(f.guid()) + "," + strings.ToLower(f.guid())
	f.mu.Lock()
	f.sites[site] = drive
	f.mu.Unlock()
	return site, drive
}

// newItem adds an item (locked).
func (f *fakeGraph) newItem(d *fakeDrive, name, parent string, folder bool) *fakeItem {
	f.nextID++
	f.seq++
	it := &fakeItem{
		id:   fmt.Sprintf("01BYE5RZ%018dQ", f.nextID),
		name: name, parent: parent, folder: folder,
		guid: f.guid(), created: f.seq, seq: f.seq, cver: 1, ever: 1, mod: f.tick(),
	}
	d.items[it.id] = it
	return it
}

func (f *fakeGraph) tick() time.Time {
	f.clock = f.clock.Add(time.Second)
	return f.clock
}

// put adds or replaces the file name in folder parent ("" is the root) of
// drive, and returns its item id.
func (f *fakeGraph) put(drive, parent, name string, body []byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.drives[drive]
	if parent == "" {
		parent = d.root
	}
	for _, it := range d.items {
		if it.parent == parent && it.name == name && !it.deleted && !it.folder {
			f.seq++
			it.body, it.seq, it.mod = slices.Clone(body), f.seq, f.tick()
			it.cver++
			it.ever++
			return it.id
		}
	}
	it := f.newItem(d, name, parent, false)
	it.body = slices.Clone(body)
	it.mime = mime.TypeByExtension(path.Ext(name))
	if it.mime == "" {
		it.mime = "application/octet-stream"
	}
	return it.id
}

// mkdir adds a folder in the root of drive and returns its id.
func (f *fakeGraph) mkdir(drive, name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.drives[drive]
	return f.newItem(d, name, d.root, true).id
}

// notebook adds a OneNote notebook (the package facet) in the root.
func (f *fakeGraph) notebook(drive, name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.drives[drive]
	it := f.newItem(d, name, d.root, false)
	it.pkg = true
	return it.id
}

// rename changes an item's name: its eTag changes, its cTag does not.
func (f *fakeGraph) rename(drive, id, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it := f.drives[drive].items[id]
	f.seq++
	it.name, it.seq, it.mod = name, f.seq, f.tick()
	it.ever++
}

// remove deletes an item: it stays as a tombstone for delta.
func (f *fakeGraph) remove(drive, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it := f.drives[drive].items[id]
	f.seq++
	it.deleted, it.seq, it.body = true, f.seq, nil
}

// forgetTokens makes every delta token issued so far answer 410
// resyncRequired, as after Graph dropped its change log.
func (f *fakeGraph) forgetTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.minSeq = f.seq
}

func (f *fakeGraph) set(fn func(f *fakeGraph)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeGraph) rateLimit(d time.Duration) {
	f.set(func(f *fakeGraph) { f.limits = append(f.limits, d) })
}

func (f *fakeGraph) servedBytes(id string) (n int64) {
	f.set(func(f *fakeGraph) { n = f.served[id] })
	return n
}

func (f *fakeGraph) authorizedDownloads() (n int) {
	f.set(func(f *fakeGraph) { n = f.authDL })
	return n
}

// graphError writes Graph's error body.
func graphError(w http.ResponseWriter, status int, code, msg string, inner map[string]any) {
	if inner == nil {
		inner = map[string]any{}
	}
	inner["date"] = time.Now().UTC().Format("2006-01-02T15:04:05")
	inner["request-id"] = strings.ToLower(randHex(16))
	inner["client-request-id"] = strings.ToLower(randHex(16))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "innerError": inner}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeGraph) serveAPI(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.limits) > 0 {
		d := f.limits[0]
		f.limits = f.limits[1:]
		w.Header().Set("Retry-After", strconv.Itoa(int(d/time.Second)))
		graphError(w, http.StatusTooManyRequests, "activityLimitReached", "The request has been throttled", nil)
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if exp, known := f.tokens[tok]; !ok || !known || time.Now().After(exp) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"`)
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.", nil)
		return
	}
	if r.Method != http.MethodGet {
		graphError(w, http.StatusMethodNotAllowed, "invalidRequest", "The fake only reads", nil)
		return
	}
	p, ok := strings.CutPrefix(r.URL.Path, "/v1.0/")
	if !ok {
		graphError(w, http.StatusBadRequest, "BadRequest", "Invalid version", nil)
		return
	}
	// Resolve the drive: me/drive/…, sites/{id}/drive/…, drives/{id}/….
	var d *fakeDrive
	seg := strings.Split(p, "/")
	switch {
	case len(seg) >= 2 && seg[0] == "me" && seg[1] == "drive":
		d, seg = f.drives[f.me], seg[2:]
	case len(seg) >= 3 && seg[0] == "sites" && seg[2] == "drive":
		drive, ok := f.sites[seg[1]]
		if !ok {
			graphError(w, http.StatusNotFound, "itemNotFound", "Requested site could not be found", nil)
			return
		}
		d, seg = f.drives[drive], seg[3:]
	case len(seg) >= 2 && seg[0] == "drives":
		if d = f.drives[seg[1]]; d == nil {
			graphError(w, http.StatusNotFound, "itemNotFound", "The requested drive was not found", nil)
			return
		}
		seg = seg[2:]
	default:
		graphError(w, http.StatusBadRequest, "BadRequest", "Resource not found for the segment '"+seg[0]+"'.", nil)
		return
	}
	switch {
	case len(seg) == 0:
		writeJSON(w, map[string]any{
			"@odata.context": f.base() + "/$metadata#drives/$entity",
			"id":             d.id, "driveType": "business", "name": "Documents",
			"createdDateTime": "2024-01-01T00:00:00Z", "webUrl": "https://contoso.sharepoint.com/Shared%20Documents",
		})
	case len(seg) == 2 && seg[0] == "root" && seg[1] == "delta":
		f.delta(w, r, d)
	case len(seg) == 2 && seg[0] == "items":
		it := d.items[seg[1]]
		if it == nil || it.deleted {
			graphError(w, http.StatusNotFound, "itemNotFound", "The resource could not be found.", nil)
			return
		}
		m := f.itemJSON(d, it, false)
		m["@odata.context"] = f.base() + "/$metadata#drives('" + d.id + "')/items/$entity"
		writeJSON(w, m)
	case len(seg) == 3 && seg[0] == "items" && seg[2] == "content":
		f.content(w, r, d, seg[1])
	default:
		graphError(w, http.StatusBadRequest, "invalidRequest", "Invalid request", nil)
	}
}

// itemJSON is a driveItem as Graph answers it; in delta, business drives
// leave out cTag when omitCTag is set, and tombstones carry little.
func (f *fakeGraph) itemJSON(d *fakeDrive, it *fakeItem, delta bool) map[string]any {
	parent := map[string]any{"driveType": "business", "driveId": d.id}
	if it.parent != "" {
		parent["id"] = it.parent
	}
	if !delta {
		parent["path"] = "/drive/root:"
	}
	m := map[string]any{"id": it.id, "parentReference": parent}
	if it.deleted {
		m["deleted"] = map[string]any{"state": "deleted"}
		if it.folder {
			m["folder"] = map[string]any{"childCount": 0}
		} else {
			m["file"] = map[string]any{}
		}
		return m
	}
	m["name"] = it.name
	m["createdDateTime"] = it.mod.Format(time.RFC3339)
	m["lastModifiedDateTime"] = it.mod.Format(time.RFC3339)
	m["eTag"] = fmt.Sprintf(`"{%s},%d"`, it.guid, it.ever)
	m["webUrl"] = "https://contoso.sharepoint.com/Shared%20Documents/" + url.PathEscape(it.name)
	m["createdBy"] = map[string]any{"user": map[string]any{"email": "adele@contoso.com", "displayName": "Adele Vance"}}
	switch {
	case it.id == d.root:
		m["root"] = map[string]any{}
		m["folder"] = map[string]any{"childCount": len(d.items) - 1}
	case it.folder:
		m["folder"] = map[string]any{"childCount": 0}
	case it.pkg:
		m["package"] = map[string]any{"type": "oneNote"}
		m["size"] = 0
	default:
		m["size"] = len(it.body)
		m["file"] = map[string]any{"mimeType": it.mime, "hashes": map[string]any{"quickXorHash": base64.StdEncoding.EncodeToString([]byte(it.guid[:20]))}}
		if !delta || !f.omitCTag {
			m["cTag"] = fmt.Sprintf(`"c:{%s},%d"`, it.guid, it.cver)
		}
	}
	return m
}

// deltaState is what a delta token holds: changes after Since up to Upto
// (the run's snapshot), items created after After (the paging position).
type deltaState struct {
	Since int64 `json:"s"`
	Upto  int64 `json:"u"`
	After int64 `json:"a"`
	Top   int   `json:"t"`
}

func (f *fakeGraph) deltaLink(d *fakeDrive, st deltaState) string {
	b, _ := json.Marshal(st)
	origin := f.api.URL
	if f.foreignNxt != "" && st.After > 0 {
		origin = f.foreignNxt
	}
	return origin + "/v1.0/drives/" + url.PathEscape(d.id) + "/root/delta?token=" + base64.RawURLEncoding.EncodeToString(b)
}

func (f *fakeGraph) delta(w http.ResponseWriter, r *http.Request, d *fakeDrive) {
	q := r.URL.Query()
	st := deltaState{Upto: f.seq, Top: 200}
	if n, err := strconv.Atoi(q.Get("$top")); err == nil && n > 0 {
		st.Top = n
	}
	switch tok := q.Get("token"); tok {
	case "":
	case "latest":
		writeJSON(w, map[string]any{
			"@odata.context":   f.base() + "/$metadata#Collection(driveItem)",
			"value":            []any{},
			"@odata.deltaLink": f.deltaLink(d, deltaState{Since: f.seq, Top: st.Top}),
		})
		return
	default:
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil {
			graphError(w, http.StatusBadRequest, "invalidRequest", "Invalid delta token", nil)
			return
		}
		if st.Upto == 0 { // a deltaLink: a new run of changes after Since
			st.Upto = f.seq
		}
		if st.Since > 0 && st.Since < f.minSeq {
			w.Header().Set("Location", f.deltaLink(d, deltaState{Upto: f.seq, Top: st.Top}))
			graphError(w, http.StatusGone, "resyncRequired", "Resync required. Replace any local items with the server's version (including deletes).",
				map[string]any{"code": "resyncChangesApplyDifferences"})
			return
		}
	}
	var sel []*fakeItem
	for _, it := range d.items {
		if it.created <= st.Upto && it.created > st.After && it.seq > st.Since {
			sel = append(sel, it)
		}
	}
	slices.SortFunc(sel, func(a, b *fakeItem) int { return int(a.created - b.created) })
	size := st.Top
	if f.ignoreTop {
		size = 3 * st.Top
	}
	page := map[string]any{"@odata.context": f.base() + "/$metadata#Collection(driveItem)"}
	if len(sel) > size {
		sel = sel[:size]
		next := st
		next.After = sel[len(sel)-1].created
		page["@odata.nextLink"] = f.deltaLink(d, next)
	} else {
		page["@odata.deltaLink"] = f.deltaLink(d, deltaState{Since: st.Upto, Top: st.Top})
	}
	value := []any{}
	for _, it := range sel {
		value = append(value, f.itemJSON(d, it, true))
	}
	page["value"] = value
	writeJSON(w, page)
}

// content answers /content: 304 when If-None-Match names the item's cTag
// or eTag, else 302 to a fresh pre-authenticated URL on the download host.
func (f *fakeGraph) content(w http.ResponseWriter, r *http.Request, d *fakeDrive, id string) {
	it := d.items[id]
	if it == nil || it.deleted {
		graphError(w, http.StatusNotFound, "itemNotFound", "The resource could not be found.", nil)
		return
	}
	if it.folder || it.pkg {
		graphError(w, http.StatusBadRequest, "invalidRequest", "Only files can be downloaded", nil)
		return
	}
	ctag, etag := fmt.Sprintf(`"c:{%s},%d"`, it.guid, it.cver), fmt.Sprintf(`"{%s},%d"`, it.guid, it.ever)
	if inm := r.Header.Get("If-None-Match"); inm != "" && (inm == ctag || inm == etag) {
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	tempauth := randHex(32)
	f.downl[tempauth] = graph.ItemID(d.id, id)
	loc := f.dl.URL + "/personal/adele_contoso_com/_layouts/15/download.aspx?UniqueId=" + strings.ToLower(it.guid) + "&Translate=false&tempauth=" + tempauth + "&ApiVersion=2.0"
	if f.location != "" {
		loc = f.location + "?tempauth=" + tempauth
	}
	w.Header().Set("Location", loc)
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusFound)
}

// serveDownload is the download host: it refuses (and counts) a request
// carrying an Authorization header, serves a live URL's bytes, and counts
// them.
func (f *fakeGraph) serveDownload(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if r.Header.Get("Authorization") != "" {
		f.authDL++
		f.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if f.redirectDL != "" {
		loc := f.redirectDL
		f.mu.Unlock()
		http.Redirect(w, r, loc, http.StatusFound)
		return
	}
	id, ok := f.downl[r.URL.Query().Get("tempauth")]
	var it *fakeItem
	if ok {
		drive, item, _ := strings.Cut(id, "/")
		it = f.drives[drive].items[item]
	}
	if it == nil || it.deleted {
		f.mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
		return
	}
	body := it.body
	w.Header().Set("Content-Type", it.mime)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("ETag", fmt.Sprintf(`"{%s},%d"`, it.guid, it.ever))
	f.mu.Unlock()
	for len(body) > 0 {
		n := min(len(body), 32<<10)
		k, err := w.Write(body[:n])
		f.mu.Lock()
		f.served[id] += int64(k)
		f.mu.Unlock()
		if err != nil {
			return
		}
		body = body[n:]
	}
}
