// Package confluence is the Confluence Cloud connector: a thin client of
// Confluence's REST API v2 (pages, spaces) and of v1's CQL content search
// (the change feed), over connectors/rest, with an OAuth 2.0 (3LO) bearer
// token asked of its TokenSource for each request.
//
// What it promises:
//   - The API root is https://api.atlassian.com/ex/confluence/{cloudId}
//     (Config.CloudID, the site's id from accessible-resources);
//     Config.BaseURL replaces it whole (tests, a proxy). v2 paths live
//     under /wiki/api/v2, v1's under /wiki/rest/api.
//   - A source is "" or "all" (every page the grant can read:
//     GET /wiki/api/v2/pages), or "space:KEY" (the pages of the space of
//     that key, resolved to its id with GET /wiki/api/v2/spaces?keys=KEY,
//     then GET /wiki/api/v2/spaces/{id}/pages; an unknown key is
//     connectors.ErrGone). Only pages of status "current" are listed:
//     drafts, archived and trashed pages are not.
//   - An item is a page: ID its page id, Name "<title>.md", Version its
//     version number, Modified when that version was made, Size -1.
//     Listings carry no body: a page's body can be as large as the size cap,
//     and a listing page of PageSize bodies would not stay bounded; Open
//     fetches it.
//   - Listing is paginated by Confluence's opaque cursor, read from the
//     Link header's rel="next" (else the body's _links.next); the link must
//     be relative or of the API's origin, and only its cursor is taken: the
//     connector sends its own request, with its own parameters, to its own
//     base URL. The cursor holds that cursor, the count listed (the listing
//     yields at most Source.MaxItems, default connectors.DefaultMaxItems, at
//     most connectors.HardMaxItems), the resolved space id and a hash of the
//     source, so that another source's cursor is invalid.
//   - Source.Items lists picked page ids, PageSize per request
//     (GET /wiki/api/v2/pages?id=…), in the order given; a picked page
//     missing, trashed or archived fails the listing with ErrGone.
//   - Open fetches GET /wiki/api/v2/pages/{id}?body-format=storage and
//     renders the storage-format XHTML as Markdown (StorageToMarkdown):
//     Content.ContentType "text/markdown; charset=utf-8", Content.Version
//     the version number fetched. The JSON answer is capped at MaxBytes plus
//     64 KiB of metadata (a Content-Length over it fails before any byte is
//     read) and the Markdown at MaxBytes: past either, TooLarge. A page is text
//     in JSON, UTF-8 only: content is rendered, not passed through byte for
//     byte (what was not UTF-8 is U+FFFD). Confluence answers no conditional
//     request: Open compares the version fetched with Item.Seen and answers
//     connectors.ErrNotModified when they match, sparing the rendering and
//     what follows it.
//   - The OAuth 2.0 (3LO) grant needs at least read:page:confluence and
//     read:space:confluence (v2's pages and spaces) and search:confluence
//     (v1's CQL search, the change feed); a token lacking one is refused
//     by the gateway with a 401 that Classify reads as forbidden.
//   - The change feed (connectors.ChangeFeed): a token is Confluence's time
//     (an answer's Date header, never the local clock); Changes lists the
//     pages CQL finds modified since (lastmodified, to the minute, in the
//     site's zone: Config.SiteTimeZone), less an Overlap of a minute, kept
//     by their exact version time, then reports every archived, trashed or
//     deleted page of src as removed (trashing makes no new version, so its
//     time is unknown). See Changes.
//   - Errors are classified by Classify; they never quote Confluence's
//     error bodies, a URL's query (a CQL query names titles and spaces) or a
//     token.
package confluence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/rest"
)

// MaxPageSize is the most pages v2 answers per request.
const MaxPageSize = 250

// Config configures the Confluence connector. Zero values take the
// defaults.
type Config struct {
	// CloudID is the Confluence site's cloud id; the API root is
	// https://api.atlassian.com/ex/confluence/{CloudID}. Required unless
	// BaseURL is set.
	CloudID string
	// BaseURL replaces the API root whole (a fake in tests).
	BaseURL string
	// AllowPrivate lets BaseURL be a private or loopback address (tests).
	AllowPrivate bool
	// HTTP makes the requests; nil is rest's default (the SSRF guard, no
	// redirects).
	HTTP *http.Client
	// PageSize is how many pages one List page asks for. Default 100,
	// at most MaxPageSize.
	PageSize int
	// MaxBytes caps one page's content (its JSON answer and its Markdown).
	// Default 64 MiB.
	MaxBytes int64
	// SiteTimeZone is the site's time zone, in which CQL reads dates
	// (Confluence reads them in the site's zone, not in UTC nor in the
	// user's). nil (unknown) widens each change query's window by 12
	// hours, the most a zone lags UTC; the exact time of each result
	// then filters the widened window, so nothing but cost depends on it.
	SiteTimeZone *time.Location
	// Now tells the time, for X-RateLimit-Reset when an answer has no
	// Date. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.PageSize <= 0 {
		c.PageSize = 100
	}
	c.PageSize = min(c.PageSize, MaxPageSize)
	if c.MaxBytes <= 0 {
		c.MaxBytes = 64 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

var cloudID = regexp.MustCompile(`^[0-9A-Za-z-]{1,64}$`)

// Connector lists and fetches a Confluence site's pages with one grant.
// Safe for concurrent use.
type Connector struct {
	cfg    Config
	client *rest.Client
}

var (
	_ connectors.Connector  = (*Connector)(nil)
	_ connectors.ChangeFeed = (*Connector)(nil)
)

// New returns a connector that asks tok for the bearer token of each
// request. A config naming neither a cloud id nor a base URL is invalid.
func New(cfg Config, tok rest.TokenSource) (*Connector, error) {
	cfg.setDefaults()
	base := cfg.BaseURL
	if base == "" {
		if !cloudID.MatchString(cfg.CloudID) {
			return nil, apiary.E(apiary.KindInvalid, "confluence: the site's cloud id is missing or malformed")
		}
		base = "https://api.atlassian.com/ex/confluence/" + cfg.CloudID
	}
	c := &Connector{cfg: cfg}
	client, err := rest.New(rest.Config{
		Name:         "confluence",
		BaseURL:      base,
		Token:        tok,
		Header:       http.Header{"Accept": {"application/json"}},
		Classify:     c.Classify,
		HTTP:         cfg.HTTP,
		AllowPrivate: cfg.AllowPrivate,
	})
	if err != nil {
		return nil, err
	}
	c.client = client
	return c, nil
}

// source is a parsed Source.Location.
type source struct {
	spaceKey string // "" for the whole site
}

var spaceKey = regexp.MustCompile(`^~?[A-Za-z0-9_:-]{1,255}$`)

// parseSource reads "" or "all" (the whole site) or "space:KEY".
func parseSource(loc string) (source, error) {
	switch {
	case loc == "" || loc == "all":
		return source{}, nil
	case strings.HasPrefix(loc, "space:") && spaceKey.MatchString(strings.TrimPrefix(loc, "space:")):
		return source{spaceKey: strings.TrimPrefix(loc, "space:")}, nil
	}
	return source{}, apiary.E(apiary.KindInvalid, `confluence: source %q is not "all" nor "space:KEY"`, loc)
}

var pageID = regexp.MustCompile(`^[0-9]{1,20}$`)

// listCursor is a listing's state between List calls.
type listCursor struct {
	Source uint64 `json:"s"`
	Space  string `json:"sp,omitempty"` // the resolved space id
	Next   string `json:"c,omitempty"`  // Confluence's cursor
	Listed int    `json:"n,omitempty"`  // items yielded (picked: ids consumed)
}

// v2Page is a page as v2 answers it.
type v2Page struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Title   string `json:"title"`
	SpaceID string `json:"spaceId"`
	Version struct {
		Number    int       `json:"number"`
		CreatedAt time.Time `json:"createdAt"`
	} `json:"version"`
	Body struct {
		Storage struct {
			Value string `json:"value"`
		} `json:"storage"`
	} `json:"body"`
}

func (p v2Page) item() connectors.Item {
	return connectors.Item{
		ID:          p.ID,
		Name:        p.Title + ".md",
		ContentType: "text/markdown",
		Size:        -1,
		Version:     strconv.Itoa(p.Version.Number),
		Modified:    p.Version.CreatedAt,
	}
}

// v2List is a v2 listing's answer.
type v2List struct {
	Results []v2Page `json:"results"`
	Links   struct {
		Next string `json:"next"`
	} `json:"_links"`
}

func limitOf(src connectors.Source) int {
	if src.MaxItems <= 0 {
		return connectors.DefaultMaxItems
	}
	return min(src.MaxItems, connectors.HardMaxItems)
}

// List returns the page of src's pages that starts at cur.
func (c *Connector) List(ctx context.Context, src connectors.Source, cur connectors.Cursor) (connectors.Page, error) {
	s, err := parseSource(src.Location)
	if err != nil {
		return connectors.Page{}, err
	}
	st := listCursor{Source: src.Hash()}
	if cur != "" && (!connectors.DecodeCursor(cur, &st) || st.Source != src.Hash() || st.Listed < 0) {
		return connectors.Page{}, apiary.E(apiary.KindInvalid, "confluence: the cursor is not one of this source's")
	}
	if len(src.Items) > 0 {
		return c.listPicked(ctx, src.Items, st)
	}
	limit := limitOf(src)
	if st.Listed >= limit || (cur != "" && st.Next == "") {
		return connectors.Page{}, nil
	}
	path, err := c.pagesPath(ctx, s, &st.Space)
	if err != nil {
		return connectors.Page{}, err
	}
	q := url.Values{"status": {"current"}, "limit": {strconv.Itoa(min(c.cfg.PageSize, limit-st.Listed))}}
	if st.Next != "" {
		q.Set("cursor", st.Next)
	}
	var list v2List
	h, err := c.getJSON(ctx, rest.Request{Path: path, Query: q, What: "list pages"}, &list)
	if err != nil {
		return connectors.Page{}, err
	}
	var page connectors.Page
	for _, p := range list.Results {
		if p.Status != "current" || !pageID.MatchString(p.ID) || st.Listed >= limit {
			continue
		}
		st.Listed++
		page.Items = append(page.Items, p.item())
	}
	next, err := c.nextCursor(h, list.Links.Next, "list pages")
	if err != nil {
		return connectors.Page{}, err
	}
	if next != "" && st.Listed < limit {
		st.Next = next
		page.Next = connectors.EncodeCursor(st)
	}
	return page, nil
}

// pagesPath is the v2 path listing s's pages; a space's key is resolved
// once, into *spaceID.
func (c *Connector) pagesPath(ctx context.Context, s source, spaceID *string) (string, error) {
	if s.spaceKey == "" {
		return "/wiki/api/v2/pages", nil
	}
	if *spaceID == "" {
		var spaces struct {
			Results []struct {
				ID  string `json:"id"`
				Key string `json:"key"`
			} `json:"results"`
		}
		if _, err := c.getJSON(ctx, rest.Request{
			Path: "/wiki/api/v2/spaces", Query: url.Values{"keys": {s.spaceKey}}, What: "find space " + s.spaceKey,
		}, &spaces); err != nil {
			return "", err
		}
		for _, sp := range spaces.Results {
			if sp.Key == s.spaceKey && pageID.MatchString(sp.ID) {
				*spaceID = sp.ID
			}
		}
		if *spaceID == "" {
			return "", connectors.Gone("confluence: no space of key %s can be read", s.spaceKey)
		}
	}
	if !pageID.MatchString(*spaceID) {
		return "", apiary.E(apiary.KindInvalid, "confluence: the cursor is not one of this source's")
	}
	return "/wiki/api/v2/spaces/" + *spaceID + "/pages", nil
}

// listPicked lists the picked pages ids[st.Listed:], a request per page.
func (c *Connector) listPicked(ctx context.Context, ids []string, st listCursor) (connectors.Page, error) {
	if st.Listed >= len(ids) {
		return connectors.Page{}, nil
	}
	chunk := ids[st.Listed:min(len(ids), st.Listed+c.cfg.PageSize)]
	for _, id := range chunk {
		if !pageID.MatchString(id) {
			return connectors.Page{}, apiary.E(apiary.KindInvalid, "confluence: a picked item is not a page id")
		}
	}
	var list v2List
	q := url.Values{"id": {strings.Join(chunk, ",")}, "status": {"current"}, "limit": {strconv.Itoa(len(chunk))}}
	if _, err := c.getJSON(ctx, rest.Request{Path: "/wiki/api/v2/pages", Query: q, What: "list picked pages"}, &list); err != nil {
		return connectors.Page{}, err
	}
	byID := map[string]v2Page{}
	for _, p := range list.Results {
		if p.Status == "current" {
			byID[p.ID] = p
		}
	}
	var page connectors.Page
	for _, id := range chunk {
		p, ok := byID[id]
		if !ok {
			return connectors.Page{}, connectors.Gone("confluence: a picked page is gone or no longer current")
		}
		page.Items = append(page.Items, p.item())
	}
	st.Listed += len(chunk)
	if st.Listed < len(ids) {
		page.Next = connectors.EncodeCursor(st)
	}
	return page, nil
}

// getJSON sends r and decodes its answer into out, returning its header.
func (c *Connector) getJSON(ctx context.Context, r rest.Request, out any) (http.Header, error) {
	resp, err := c.client.Do(ctx, r)
	if err != nil {
		return nil, err
	}
	defer rest.Drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, apiary.E(apiary.KindUnavailable, "confluence: %s: unexpected status %d", r.What, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, rest.MaxJSON)).Decode(out); err != nil {
		return nil, apiary.Wrap(err, apiary.KindUnavailable, "confluence: %s: the answer is not the JSON expected", r.What)
	}
	return resp.Header, nil
}

// nextCursor is Confluence's cursor for the next page: the cursor
// parameter of the Link header's rel="next" link, else of the body's
// _links.next; "" when there is none. A link to another origin, or
// without a cursor, is refused.
func (c *Connector) nextCursor(h http.Header, bodyNext, what string) (string, error) {
	link := linkNext(h)
	if link == "" {
		link = bodyNext
	}
	if link == "" {
		return "", nil
	}
	u, err := url.Parse(link)
	if err != nil || ((u.Scheme != "" || u.Host != "") && !c.client.SameOrigin(link)) {
		return "", apiary.E(apiary.KindInvalid, "confluence: %s: the next-page link leads to another origin", what)
	}
	cur := u.Query().Get("cursor")
	if cur == "" {
		return "", apiary.E(apiary.KindUnavailable, "confluence: %s: the next-page link holds no cursor", what)
	}
	return cur, nil
}

// linkNext is the target of the rel="next" link of a Link header (RFC
// 8288): `</wiki/api/v2/pages?cursor=…>; rel="next", <…>; rel="base"`. A
// target is read to its ">", so a comma inside it does not split it.
func linkNext(h http.Header) string {
	for _, v := range h.Values("Link") {
		for {
			start := strings.IndexByte(v, '<')
			end := strings.IndexByte(v[max(start, 0):], '>')
			if start < 0 || end < 0 {
				break
			}
			target := v[start+1 : start+end]
			v = v[start+end+1:]
			params := v
			if k := strings.IndexByte(v, '<'); k >= 0 {
				params = v[:k]
			}
			for p := range strings.SplitSeq(params, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(strings.TrimRight(strings.TrimSpace(p), ",")), "=")
				if strings.EqualFold(strings.TrimSpace(k), "rel") && slices.Contains(strings.Fields(strings.ToLower(strings.Trim(val, `"`))), "next") {
					return target
				}
			}
		}
	}
	return ""
}

// metaSlack is the room a page's JSON answer has, past MaxBytes, for
// everything but its body.
const metaSlack = 64 << 10

// Open fetches item's page and renders its body as Markdown.
func (c *Connector) Open(ctx context.Context, item connectors.Item) (*connectors.Content, error) {
	if !pageID.MatchString(item.ID) {
		return nil, apiary.E(apiary.KindInvalid, "confluence: item id is not a page id")
	}
	what := "confluence: page " + item.ID
	if item.Size > c.cfg.MaxBytes {
		return nil, connectors.TooLarge(what, c.cfg.MaxBytes)
	}
	resp, err := c.client.Do(ctx, rest.Request{
		Path:  "/wiki/api/v2/pages/" + item.ID,
		Query: url.Values{"body-format": {"storage"}},
		What:  "fetch page " + item.ID,
	})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		rest.Drain(resp)
		return nil, apiary.E(apiary.KindUnavailable, "%s: unexpected status %d", what, resp.StatusCode)
	}
	capJSON := c.cfg.MaxBytes + metaSlack
	if resp.ContentLength > capJSON {
		resp.Body.Close() // unread: the transport drops the connection
		return nil, connectors.TooLarge(what, c.cfg.MaxBytes)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, capJSON+1))
	resp.Body.Close()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, errors.Join(apiary.E(apiary.KindUnavailable, "%s: the fetch was cut", what), cerr)
		}
		return nil, apiary.Wrap(err, apiary.KindUnavailable, "%s: the fetch was cut", what)
	}
	if int64(len(b)) > capJSON {
		return nil, connectors.TooLarge(what, c.cfg.MaxBytes)
	}
	var p v2Page
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, apiary.Wrap(err, apiary.KindUnavailable, "%s: the answer is not the JSON expected", what)
	}
	if p.Status != "current" {
		return nil, connectors.Gone("%s: the page is %s", what, statusWord(p.Status))
	}
	version := strconv.Itoa(p.Version.Number)
	if item.Seen != "" && item.Seen == version {
		return nil, connectors.ErrNotModified
	}
	md := StorageToMarkdown(p.Body.Storage.Value)
	if int64(len(md)) > c.cfg.MaxBytes {
		return nil, connectors.TooLarge(what, c.cfg.MaxBytes)
	}
	return &connectors.Content{
		Body:        io.NopCloser(bytes.NewReader([]byte(md))),
		ContentType: "text/markdown; charset=utf-8",
		Version:     version,
	}, nil
}

// statusWord names a page status safely (Confluence's own words only).
func statusWord(s string) string {
	switch s {
	case "trashed", "archived", "deleted", "draft", "historical":
		return s
	}
	return "not current"
}

// errorCode is the code of a Confluence error body, when it is one of
// Confluence's upper-case codes (never its title or detail, which may
// quote the request): v2's {"errors":[{"status":…,"code":"…",…}]}.
func errorCode(body []byte) string {
	var v2 struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	rest.ErrorBody(body, &v2)
	if len(v2.Errors) > 0 && errCode.MatchString(v2.Errors[0].Code) {
		return v2.Errors[0].Code
	}
	return ""
}

var errCode = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

// Classify reads Confluence's non-2xx answers (what names the request,
// "confluence: list pages"):
//   - 400: invalid (a CQL query or a cursor Confluence refuses; a token of
//     the change feed it no longer honours), naming v2's error code;
//   - 401: unauthenticated, except the gateway's scope check (header
//     X-Failure-Category: FAILURE_CLIENT_SCOPE_CHECK, or its body's
//     "scope does not match"): forbidden, for the token is valid but the
//     grant lacks a scope this request needs;
//   - 403: forbidden; 404 and 410: gone;
//   - 429: rate limited, after Retry-After (seconds), else after
//     X-RateLimit-Reset (an ISO 8601 time, read against the answer's Date),
//     else connectors.DefaultRetryAfter. Beta-Retry-After is not read: it
//     comes on answers that were served, saying what a limit not yet
//     enforced would have asked;
//   - 503 with Retry-After (a resource limit, Atlassian says): rate
//     limited after it; other 5xx: unavailable.
//
// v2's {"errors":[…]} and v1's {"statusCode":…,"message":…} bodies are
// never quoted: their messages repeat the query.
func (c *Connector) Classify(resp *http.Response, body []byte, what string) error {
	switch s := resp.StatusCode; {
	case s == http.StatusBadRequest:
		if code := errorCode(body); code != "" {
			return apiary.E(apiary.KindInvalid, "%s: Confluence refused the request (%s)", what, code)
		}
		return apiary.E(apiary.KindInvalid, "%s: Confluence refused the request (400)", what)
	case s == http.StatusUnauthorized && scopeMismatch(resp.Header, body):
		return apiary.E(apiary.KindForbidden, "%s: the grant lacks a scope this needs (see the connector's documented scopes)", what)
	case s == http.StatusTooManyRequests:
		return connectors.RetryAfter(c.retryAfter(resp.Header), "%s: Confluence is rate limiting", what)
	case s == http.StatusServiceUnavailable:
		if d := connectors.ParseRetryAfter(resp.Header, c.cfg.Now()); d > 0 {
			return connectors.RetryAfter(d, "%s: Confluence is over a resource limit", what)
		}
	}
	return connectors.ClassifyStatus(resp, what)
}

// scopeMismatch tells the gateway's refusal of a valid token that lacks a
// scope: {"code":401,"message":"Unauthorized; scope does not match"}.
func scopeMismatch(h http.Header, body []byte) bool {
	if h.Get("X-Failure-Category") == "FAILURE_CLIENT_SCOPE_CHECK" {
		return true
	}
	var v struct {
		Message string `json:"message"`
	}
	rest.ErrorBody(body, &v)
	return strings.Contains(v.Message, "scope does not match")
}

// retryAfter is a 429's delay: Retry-After, else X-RateLimit-Reset.
func (c *Connector) retryAfter(h http.Header) time.Duration {
	now := c.cfg.Now()
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		now = d
	}
	if d := connectors.ParseRetryAfter(h, now); d > 0 {
		return d
	}
	v := strings.TrimSpace(h.Get("X-RateLimit-Reset"))
	for _, layout := range []string{"2006-01-02T15:04Z07:00", time.RFC3339} {
		if t, err := time.Parse(layout, v); err == nil {
			return min(max(t.Sub(now), 0), connectors.MaxRetryAfter)
		}
	}
	return 0
}
