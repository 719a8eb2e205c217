// Package notion is the Notion connector: a thin client of Notion's public
// REST API (https://api.notion.com/v1) over connectors/rest. It lists the
// pages an integration may read and renders each page's blocks to Markdown.
//
// What it promises:
//   - Every request carries the pinned "Notion-Version: 2022-06-28"
//     (NotionVersion): the JSON shapes read here are that version's, and a
//     later Notion release changes nothing until the pin is moved.
//   - A source is "" or "all" (every page shared with the integration, as
//     POST /search lists them, database rows included), or "page:<id>"
//     (that page, then its child pages: the child_page blocks at the top
//     level of its content, each retrieved for its version; grandchildren,
//     and child pages nested in other blocks such as toggles or columns,
//     are not listed: that would read every block of every page at each
//     listing; list them with "all", their own "page:<id>", or pick them).
//     The listing cursor holds the child pages found and not yet listed (at
//     most 100 ids). Source.Items lists picked page ids only, each
//     retrieved with GET /pages/{id}, paged; a picked page gone (not found,
//     archived or in the trash) fails the listing with connectors.ErrGone,
//     naming no id.
//   - A listing yields at most Source.MaxItems pages (default
//     connectors.DefaultMaxItems, at most connectors.HardMaxItems); a List
//     page holds at most Config.PageSize. The cursor is base64 JSON: the
//     source's hash, Notion's cursor, the count listed; another source's
//     cursor is invalid.
//   - An item's ID is the page id; its Name is "<title>.md" (the title is
//     the page property of type "title", whatever its name, so database
//     rows have one too; "/" becomes "-"; "Untitled.md" without one); its
//     Version is the page's last_edited_time. Archived and trashed pages
//     are not listed.
//   - Notion rounds last_edited_time down to the minute, so an edit made in
//     the same minute as a listing would keep the version that listing
//     recorded. A version less than SettleTime old is therefore marked
//     unsettled (a "~" after the time): it changes once the minute is over,
//     so the first listing after that fetches the page again, and an edit
//     made within that minute is not lost. Open with Item.Seen answers
//     connectors.ErrNotModified (asking for no block) only for a settled
//     version equal to the page's.
//   - The listing is POST /search sorted by last_edited_time, descending,
//     paged by Notion's cursor. Notion does not say how its cursor behaves
//     when a page is edited during a listing: such a page can move across
//     the cursor and be listed twice, or not at all by that listing (a
//     sync diffing by absence then removes it, and the next listing adds
//     it again).
//   - Open retrieves the page (archived or in the trash: gone), then reads
//     its blocks (GET /blocks/{id}/children, 100 a request, nested blocks
//     recursively) and renders them as Markdown (content type
//     text/markdown): a "# title" line, then paragraphs, headings (a
//     level below the title's), bulleted, numbered and to-do lists (nested
//     lists indented), toggles, quotes, callouts, fenced code with its
//     language, dividers, tables (the first row as the header), child
//     pages (a link), bookmarks, embeds, images, files, videos and PDFs
//     (caption and URL; nothing is downloaded, and the query of a
//     Notion-hosted file's URL, its expiring signature, is left out),
//     equations; columns and synced blocks are read through. Rich text
//     keeps bold, italic, strikethrough, inline code, links and inline
//     equations; text is not escaped. Other block types are skipped.
//   - The rendering is in memory and bounded: Config.MaxBytes of Markdown
//     (more is KindTooLarge, and no further block is asked for),
//     Config.MaxBlocks blocks (more is KindTooLarge), Config.MaxDepth
//     levels of nesting (deeper blocks are left out). Once the page is
//     retrieved, a rate limit (or overload) of at most MaxRenderWait
//     answering a request for blocks is waited out and the request sent
//     again (5 times at most), so that a long page is not started over
//     for Notion's three requests a second; a longer one fails Open with
//     its delay. Content.Version is the page's version, as the listing
//     computes it.
//   - Notion's content is JSON, so always Unicode: Open yields UTF-8.
//   - Errors are read from Notion's error body by Classify (its code, never
//     its message, which may quote the request).
//
// The connector does not implement connectors.ChangeFeed: Notion's search
// can list the pages edited since a time, but it cannot name the pages
// deleted, trashed or unshared since then (they just leave the results),
// and a change feed must report removals. A sync lists the whole source
// instead and diffs versions, which finds removals by absence and fetches
// no unchanged page.
package notion

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/rest"
)

// NotionVersion is the API version every request pins (the Notion-Version
// header): the JSON read here is that version's.
const NotionVersion = "2022-06-28"

// DefaultBaseURL is Notion's API root.
const DefaultBaseURL = "https://api.notion.com/v1"

// Limits.
const (
	// MaxPageSize is Notion's own cap on a page of results.
	MaxPageSize = 100
	// DefaultMaxBlocks caps the blocks of one page.
	DefaultMaxBlocks = 10_000
	// DefaultMaxDepth caps the nesting of blocks read.
	DefaultMaxDepth = 12
	// SettleTime is how long after its (minute-rounded) last_edited_time a
	// version is unsettled: a minute for the rounding, a minute for the
	// clocks' skew.
	SettleTime = 2 * time.Minute
	// MaxRenderWait is the longest rate limit (or overload) sat out in the
	// middle of a page's render, rather than failing it.
	MaxRenderWait = 30 * time.Second
	// maxRenderRetries bounds the waits for one request of a render.
	maxRenderRetries = 5
	// maxTreeRequests bounds the requests of one List page of a
	// "page:<id>" source.
	maxTreeRequests = 2 * MaxPageSize
)

// Config configures the Notion connector. Zero values take the defaults.
type Config struct {
	// BaseURL is the API root. Default DefaultBaseURL.
	BaseURL string
	// AllowPrivate lets a BaseURL on a private or loopback host through the
	// SSRF guard (tests). Default false.
	AllowPrivate bool
	// HTTP makes the requests. Default: rest's, through the SSRF guard.
	HTTP *http.Client
	// PageSize is how many items one List page holds. Default and maximum
	// MaxPageSize.
	PageSize int
	// MaxBytes caps one page's Markdown. Default 64 MiB.
	MaxBytes int64
	// MaxBlocks caps the blocks read for one page. Default DefaultMaxBlocks.
	MaxBlocks int
	// MaxDepth caps how deep nested blocks are read. Default
	// DefaultMaxDepth.
	MaxDepth int
	// Now tells the time, to settle versions. Default time.Now.
	Now func() time.Time
	// Wait sits out a rate limit of d in the middle of a render, or
	// returns ctx's error. Default: a timer.
	Wait func(ctx context.Context, d time.Duration) error
}

func (c *Config) setDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.PageSize <= 0 || c.PageSize > MaxPageSize {
		c.PageSize = MaxPageSize
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 64 << 20
	}
	if c.MaxBlocks <= 0 {
		c.MaxBlocks = DefaultMaxBlocks
	}
	if c.MaxDepth <= 0 {
		c.MaxDepth = DefaultMaxDepth
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Wait == nil {
		c.Wait = wait
	}
}

// wait is Config.Wait's default.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Connector lists and renders Notion pages with one integration's token.
// Safe for concurrent use.
type Connector struct {
	cfg    Config
	client *rest.Client
}

var _ connectors.Connector = (*Connector)(nil)

// New returns a Notion connector that asks tok for the bearer token of each
// request (an internal integration's secret or an OAuth access token).
func New(cfg Config, tok rest.TokenSource) (*Connector, error) {
	if tok == nil {
		return nil, apiary.E(apiary.KindInvalid, "notion: no token source")
	}
	cfg.setDefaults()
	client, err := rest.New(rest.Config{
		Name:         "notion",
		BaseURL:      cfg.BaseURL,
		Token:        tok,
		Header:       http.Header{"Notion-Version": {NotionVersion}, "Accept": {"application/json"}},
		Classify:     Classify,
		HTTP:         cfg.HTTP,
		AllowPrivate: cfg.AllowPrivate,
	})
	if err != nil {
		return nil, err
	}
	return &Connector{cfg: cfg, client: client}, nil
}

// Classify reads Notion's error answer {"object":"error","status":…,
// "code":…,"message":…} (what names the request):
//   - 401, unauthorized: unauthenticated (the token was revoked, or the
//     integration removed);
//   - restricted_resource: forbidden (the integration lacks the capability);
//   - object_not_found: gone (deleted, or no longer shared with the
//     integration: Notion does not tell them apart);
//   - 429, rate_limited: rate limited after Retry-After;
//   - 529 and 503 (overloaded, service_unavailable,
//     database_connection_unavailable), 500, 502, 504: unavailable, retried
//     after Retry-After when Notion names one;
//   - conflict_error (409): unavailable (retried: Notion says to try again);
//   - validation_error, invalid_json, invalid_request, invalid_request_url,
//     missing_version (400): invalid.
//
// Notion's message is never quoted: it may repeat the request.
func Classify(resp *http.Response, body []byte, what string) error {
	var e struct {
		Object string `json:"object"`
		Code   string `json:"code"`
	}
	rest.ErrorBody(body, &e)
	code := e.Code
	if !codeRE.MatchString(code) {
		code = ""
	}
	delay := connectors.ParseRetryAfter(resp.Header, time.Now())
	s := resp.StatusCode
	switch {
	case code == "unauthorized" || s == http.StatusUnauthorized:
		return apiary.E(apiary.KindUnauthenticated, "%s: Notion refused the token (%s): it may have been revoked", what, orStatus(code, s))
	case code == "restricted_resource":
		return apiary.E(apiary.KindForbidden, "%s: the integration may not read this (restricted_resource)", what)
	case code == "object_not_found":
		return connectors.Gone("%s: not found, or not shared with the integration", what)
	case code == "rate_limited" || s == http.StatusTooManyRequests:
		return connectors.RetryAfter(delay, "%s: Notion is rate limiting", what)
	case code == "conflict_error" || s == http.StatusConflict:
		e := apiary.E(apiary.KindUnavailable, "%s: Notion reported a conflict; try again", what)
		e.RetryAfter = delay
		return e
	case s == statusOverloaded || s >= 500:
		e := apiary.E(apiary.KindUnavailable, "%s: Notion is unavailable (%s)", what, orStatus(code, s))
		e.RetryAfter = delay
		return e
	case s == http.StatusBadRequest:
		return apiary.E(apiary.KindInvalid, "%s: Notion refused the request (%s)", what, orStatus(code, s))
	}
	return connectors.ClassifyStatus(resp, what)
}

// statusOverloaded is the status of an overloaded Notion, with Retry-After.
const statusOverloaded = 529

// codeRE is the form of Notion's error codes, so that a code is safe to
// name in an error.
var codeRE = regexp.MustCompile(`^[a-z_]{1,64}$`)

func orStatus(code string, status int) string {
	if code != "" {
		return code
	}
	return strconv.Itoa(status)
}

// Notion's JSON, as much of it as is read.

type richText struct {
	Type        string  `json:"type"`
	PlainText   string  `json:"plain_text"`
	Href        *string `json:"href"`
	Annotations struct {
		Bold          bool `json:"bold"`
		Italic        bool `json:"italic"`
		Strikethrough bool `json:"strikethrough"`
		Code          bool `json:"code"`
	} `json:"annotations"`
	Equation *struct {
		Expression string `json:"expression"`
	} `json:"equation"`
}

type page struct {
	Object         string `json:"object"`
	ID             string `json:"id"`
	LastEditedTime string `json:"last_edited_time"`
	Archived       bool   `json:"archived"`
	InTrash        bool   `json:"in_trash"`
	Properties     map[string]struct {
		Type  string     `json:"type"`
		Title []richText `json:"title"`
	} `json:"properties"`
}

func (p *page) title() string {
	for _, prop := range p.Properties {
		if prop.Type == "title" {
			return plain(prop.Title)
		}
	}
	return ""
}

func (p *page) gone() bool { return p.Archived || p.InTrash }

type list[T any] struct {
	Object     string  `json:"object"`
	Results    []T     `json:"results"`
	NextCursor *string `json:"next_cursor"`
	HasMore    bool    `json:"has_more"`
}

func (l *list[T]) next() string {
	if !l.HasMore || l.NextCursor == nil {
		return ""
	}
	return *l.NextCursor
}

func plain(rt []richText) string {
	var b strings.Builder
	for _, t := range rt {
		b.WriteString(t.PlainText)
	}
	return b.String()
}

// Versions.

// version is the item version of a page edited at lastEdited (Notion's
// minute-rounded last_edited_time), as of now: unsettled ("~" after it)
// while an edit could still keep that time.
func (c *Connector) version(lastEdited string) string {
	t, err := time.Parse(time.RFC3339, lastEdited)
	if err != nil || c.cfg.Now().Sub(t) < SettleTime {
		return lastEdited + "~"
	}
	return lastEdited
}

func settled(v string) bool { return v != "" && !strings.HasSuffix(v, "~") }

func (c *Connector) item(p *page) connectors.Item {
	it := connectors.Item{
		ID:          p.ID,
		Name:        fileName(p.title()),
		ContentType: ContentType,
		Size:        -1,
		Version:     c.version(p.LastEditedTime),
	}
	if t, err := time.Parse(time.RFC3339, p.LastEditedTime); err == nil {
		it.Modified = t
	}
	return it
}

// ContentType is the media type of an opened page.
const ContentType = "text/markdown; charset=utf-8"

var nameReplacer = strings.NewReplacer("/", "-", "\\", "-", "\n", " ", "\r", " ", "\t", " ")

// fileName is "<title>.md", "Untitled.md" for a page without a title.
func fileName(title string) string {
	title = strings.TrimSpace(nameReplacer.Replace(title))
	if title == "" {
		title = "Untitled"
	}
	return title + ".md"
}

// Ids.

var idRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// parseID reads a Notion id, with or without its dashes, in the dashed form
// Notion answers with.
func parseID(id string) (string, bool) {
	if !idRE.MatchString(id) {
		return "", false
	}
	h := strings.ToLower(strings.ReplaceAll(id, "-", ""))
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], true
}

// Sources and cursors.

// ParseSource reads a source location: "" or "all", or "page:<id>".
func ParseSource(loc string) (root string, err error) {
	switch {
	case loc == "" || loc == "all":
		return "", nil
	case strings.HasPrefix(loc, "page:"):
		if id, ok := parseID(strings.TrimPrefix(loc, "page:")); ok {
			return id, nil
		}
	}
	return "", apiary.E(apiary.KindInvalid, `notion: source %q is not "all" or "page:<page id>"`, loc)
}

// cursor is a listing's state between List calls.
type cursor struct {
	Source uint64 `json:"s"`           // hash of the source
	Notion string `json:"c,omitempty"` // Notion's cursor
	Listed int    `json:"n,omitempty"` // items yielded so far
	// A "page:<id>" listing: the child pages found and not yet listed,
	// and whether the root's blocks are all read (Notion is the cursor
	// of the blocks).
	Pending []string `json:"p,omitempty"`
	Done    bool     `json:"d,omitempty"`
}

func (c cursor) encode() connectors.Cursor { return connectors.EncodeCursor(c) }

func decodeCursor(cur connectors.Cursor, src connectors.Source) (cursor, error) {
	st := cursor{Source: src.Hash()}
	if cur == "" {
		return st, nil
	}
	var got cursor
	decoded := connectors.DecodeCursor(cur, &got)
	if !decoded || got.Source != st.Source || got.Listed < 0 {
		return cursor{}, apiary.E(apiary.KindInvalid, "notion: the cursor is not one of this source's")
	}
	return got, nil
}

// List returns the page of src's pages that starts at cur.
func (c *Connector) List(ctx context.Context, src connectors.Source, cur connectors.Cursor) (connectors.Page, error) {
	root, err := ParseSource(src.Location)
	if err != nil {
		return connectors.Page{}, err
	}
	st, err := decodeCursor(cur, src)
	if err != nil {
		return connectors.Page{}, err
	}
	limit := src.MaxItems
	if limit <= 0 {
		limit = connectors.DefaultMaxItems
	}
	limit = min(limit, connectors.HardMaxItems)
	if len(src.Items) > 0 {
		return c.listPicked(ctx, src.Items, st, limit)
	}
	if st.Listed >= limit {
		return connectors.Page{}, nil
	}
	if root != "" {
		return c.listTree(ctx, root, st, limit)
	}
	return c.search(ctx, st, limit)
}

func (c *Connector) search(ctx context.Context, st cursor, limit int) (connectors.Page, error) {
	body := map[string]any{
		"filter":    map[string]string{"property": "object", "value": "page"},
		"sort":      map[string]string{"direction": "descending", "timestamp": "last_edited_time"},
		"page_size": min(c.cfg.PageSize, limit-st.Listed),
	}
	if st.Notion != "" {
		body["start_cursor"] = st.Notion
	}
	var res list[page]
	if err := c.client.JSON(ctx, rest.Request{Method: http.MethodPost, Path: "search", Body: body, What: "list pages"}, &res); err != nil {
		return connectors.Page{}, err
	}
	var out connectors.Page
	for i := range res.Results {
		p := &res.Results[i]
		if p.Object != "page" || p.gone() {
			continue
		}
		if _, ok := parseID(p.ID); !ok || st.Listed >= limit {
			continue
		}
		st.Listed++
		out.Items = append(out.Items, c.item(p))
	}
	if next := res.next(); next != "" && st.Listed < limit {
		st.Notion = next
		out.Next = st.encode()
	}
	return out, nil
}

// listPicked lists the picked ids from st.Listed on, a page of them.
func (c *Connector) listPicked(ctx context.Context, ids []string, st cursor, limit int) (connectors.Page, error) {
	var out connectors.Page
	end := min(len(ids), limit, st.Listed+c.cfg.PageSize)
	for _, id := range ids[min(st.Listed, end):end] {
		p, err := c.page(ctx, id, "a picked page")
		if err != nil {
			return connectors.Page{}, err
		}
		out.Items = append(out.Items, c.item(p))
	}
	st.Listed = end
	if end < min(len(ids), limit) {
		out.Next = st.encode()
	}
	return out, nil
}

// listTree lists the page root, then its child pages: the child_page
// blocks at the top level of root, each retrieved for its version.
func (c *Connector) listTree(ctx context.Context, root string, st cursor, limit int) (connectors.Page, error) {
	var out connectors.Page
	requests := 0
	if st.Listed == 0 {
		p, err := c.page(ctx, root, pageWhat(root))
		if err != nil {
			return connectors.Page{}, err
		}
		requests++
		out.Items = append(out.Items, c.item(p))
		st.Listed = 1
	}
	for st.Listed < limit && len(out.Items) < c.cfg.PageSize && requests < maxTreeRequests {
		requests++
		if len(st.Pending) > 0 {
			p, err := c.page(ctx, st.Pending[0], pageWhat(st.Pending[0]))
			st.Pending = st.Pending[1:]
			if errors.Is(err, connectors.ErrGone) {
				continue // trashed since it was found: not listed
			}
			if err != nil {
				return connectors.Page{}, err
			}
			st.Listed++
			out.Items = append(out.Items, c.item(p))
			continue
		}
		if st.Done {
			break
		}
		res, err := c.children(ctx, root, st.Notion, MaxPageSize)
		if err != nil {
			return connectors.Page{}, err
		}
		for _, b := range res.Results {
			if b.Type == "child_page" && !b.Archived && !b.InTrash {
				st.Pending = append(st.Pending, b.ID)
			}
		}
		st.Notion = res.next()
		st.Done = st.Notion == ""
	}
	if (len(st.Pending) > 0 || !st.Done) && st.Listed < limit {
		out.Next = st.encode()
	}
	return out, nil
}

// page retrieves the page of id; one archived or in the trash is gone.
// what names it in errors ("page <id>", or "a picked page": a picked
// listing's errors name no id).
func (c *Connector) page(ctx context.Context, id, what string) (*page, error) {
	pid, ok := parseID(id)
	if !ok {
		return nil, apiary.E(apiary.KindInvalid, "notion: %s: the id is not a Notion page id", what)
	}
	var p page
	if err := c.client.JSON(ctx, rest.Request{Path: "pages/" + pid, What: "retrieve " + what}, &p); err != nil {
		return nil, err
	}
	if p.gone() {
		return nil, connectors.Gone("notion: %s is archived or in the trash", what)
	}
	if p.Object != "page" || p.ID == "" {
		return nil, apiary.E(apiary.KindUnavailable, "notion: retrieve %s: the answer is not a page", what)
	}
	return &p, nil
}

// pageWhat names the page of id in errors.
func pageWhat(id string) string {
	if pid, ok := parseID(id); ok {
		return "page " + pid
	}
	return "a page"
}

// children asks for one page of the children of block id.
func (c *Connector) children(ctx context.Context, id, start string, size int) (*list[block], error) {
	q := url.Values{"page_size": {strconv.Itoa(min(max(size, 1), MaxPageSize))}}
	if start != "" {
		q.Set("start_cursor", start)
	}
	var res list[block]
	if err := c.client.JSON(ctx, rest.Request{Path: "blocks/" + id + "/children", Query: q, What: "read blocks of " + id}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Open renders item's page as Markdown.
func (c *Connector) Open(ctx context.Context, item connectors.Item) (*connectors.Content, error) {
	p, err := c.page(ctx, item.ID, pageWhat(item.ID))
	if err != nil {
		return nil, err
	}
	version := c.version(p.LastEditedTime)
	if settled(item.Seen) && item.Seen == version {
		return nil, connectors.ErrNotModified
	}
	r := &renderer{c: c, ctx: ctx, what: "notion: page " + p.ID}
	if err := r.page(p); err != nil {
		return nil, err
	}
	return &connectors.Content{Body: io.NopCloser(bytes.NewReader(r.out.Bytes())), ContentType: ContentType, Version: version}, nil
}
