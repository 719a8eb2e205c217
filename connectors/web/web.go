// Package web is the web connector: it lists a site from a sitemap (or a
// sitemap index, gzip-compressed or not) or by crawling the host of a page
// URL, and fetches pages conditionally.
//
// What it promises:
//   - Every URL, redirects included, passes the SSRF guard
//     (internal/safehttp): CheckURL on the URL, the address check at dial
//     time; Config.AllowPrivate (--allow-private-sources) lets private and
//     loopback hosts through, for self-hosted sites and tests.
//   - robots.txt is obeyed (RFC 9309) for the Config.UserAgent token: the
//     groups naming it, else the "*" groups; the longest matching rule
//     decides, allow winning a tie, paths and patterns compared in one
//     percent-encoded form; the first 500 KiB are read; a 4xx
//     robots.txt allows all; a 5xx or an unreachable one disallows all,
//     so the listing fails as unavailable (retried later); a 429 is a
//     rate limit. Listing filters by it; Open does not check it
//     again (it fetches what a listing named).
//   - Only URLs of the source's own scheme and host are listed (a sitemap
//     may not name another host's pages, a crawl does not leave the host).
//   - Bounds: a listing yields at most Source.MaxItems pages (default
//     DefaultMaxPages, at most HardMaxPages); a sitemap is read to
//     Config.MaxSitemapBytes uncompressed, an index nests at most
//     MaxSitemapDepth deep and names at most MaxSitemaps sitemaps in all; a
//     page is read to Config.MaxBytes. No page list is ever held whole: a
//     sitemap is streamed, and a List page holds Config.PageSize items.
//   - The cursor holds the listing's state (the sitemaps left and the
//     position in the current one, or the crawl's frontier) and a 64-bit
//     hash of each URL seen, so it stays small (about 11 bytes a page) and a
//     resumed listing names no page twice. A sitemap is fetched again for
//     each List page that reads from it.
//   - Source.Items picks pages: absolute URLs of the source location's
//     scheme and host (else the listing is invalid, naming the pick's
//     index, as is a page picked twice, fragments aside, or more picks than
//     Source.MaxItems). robots.txt is obeyed for picks too: a picked page it
//     disallows fails the listing as forbidden (the caller asked for that
//     page, so it is told rather than skipped), before any page is asked.
//     The listing yields the picks normalized as a listing names pages, in
//     the order picked, Config.PageSize a page, each described by a HEAD
//     (ETag, Last-Modified, Content-Type, Content-Length; a GET closed
//     unread when the site answers HEAD with 405 or 501), redirects
//     followed through the SSRF guard; a 404 or 410 fails the listing with
//     connectors.ErrGone, naming no URL. The cursor holds the next pick's
//     index and a hash of the source and its picks.
//   - Versions: a sitemap's <lastmod> as listed; a crawled page's or a
//     fetched page's ETag, else its Last-Modified. Open with Item.Seen asks
//     conditionally (If-None-Match or If-Modified-Since): 304 is
//     connectors.ErrNotModified.
//   - Content passes through as the site sent it, with its Content-Type:
//     HTML is turned into text by pipeline/extract, not here.
package web

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/internal/safehttp"
)

// Limits.
const (
	DefaultMaxPages = connectors.DefaultMaxItems
	HardMaxPages    = connectors.HardMaxItems
	MaxSitemapDepth = 3 // an index of indexes of sitemaps, no deeper
	MaxSitemaps     = 1000
	MaxRedirects    = 5
	maxURLLen       = 2048
)

// Config configures the web connector. Zero values take the defaults.
type Config struct {
	// AllowPrivate lets private, loopback and link-local hosts through the
	// SSRF guard (--allow-private-sources). Default false.
	AllowPrivate bool
	// Client makes the requests. Default safehttp.NewClient with
	// AllowPrivate; a client given here must guard its dials itself.
	Client *http.Client
	// UserAgent is sent with every request; its first word, lowercased and
	// cut at "/", is the robots.txt product token. Default
	// "ApiaryBot/1.0 (+https://github.com/apiaryhq/apiary)".
	UserAgent string
	// PageSize is how many items one List page holds. Default 100.
	PageSize int
	// MaxBytes caps one page's content. Default 10 MiB.
	MaxBytes int64
	// MaxSitemapBytes caps one sitemap, uncompressed. Default 50 MiB (the
	// sitemaps protocol's own limit).
	MaxSitemapBytes int64
	// Now tells the time, for Retry-After dates. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Client == nil {
		c.Client = safehttp.NewClient(safehttp.Config{AllowPrivate: c.AllowPrivate})
	}
	if c.UserAgent == "" {
		c.UserAgent = "ApiaryBot/1.0 (+https://github.com/apiaryhq/apiary)"
	}
	if c.PageSize <= 0 {
		c.PageSize = 100
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 10 << 20
	}
	if c.MaxSitemapBytes <= 0 {
		c.MaxSitemapBytes = 50 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Connector lists and fetches web pages. Safe for concurrent use.
type Connector struct {
	cfg   Config
	token string
}

var _ connectors.Connector = (*Connector)(nil)

// New returns a web connector.
func New(cfg Config) *Connector {
	cfg.setDefaults()
	token, _, _ := strings.Cut(strings.Fields(cfg.UserAgent + " x")[0], "/")
	return &Connector{cfg: cfg, token: strings.ToLower(token)}
}

// Classify reads a web server's answer: 401 and 403 are forbidden (a
// public site has no credential of ours to refresh), 404 and 410 gone,
// 429 and a 503 with Retry-After a rate limit with the server's delay,
// other 5xx unavailable. 2xx and 304 are nil.
func (c *Connector) Classify(resp *http.Response, what string) error {
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return apiary.E(apiary.KindForbidden, "web: %s: the site refuses access (%d)", what, s)
	case s == http.StatusServiceUnavailable:
		if d := connectors.ParseRetryAfter(resp.Header, c.cfg.Now()); d > 0 {
			return connectors.RetryAfter(d, "web: %s: the site is overloaded", what)
		}
	case s == http.StatusTooManyRequests:
		return connectors.RetryAfter(connectors.ParseRetryAfter(resp.Header, c.cfg.Now()), "web: %s: the site is rate limiting", what)
	}
	return connectors.ClassifyStatus(resp, "web: "+what)
}

// get fetches u, following up to MaxRedirects redirects, each through the
// SSRF guard. It returns the final response (any status) and its URL.
func (c *Connector) get(ctx context.Context, u string, header http.Header) (*http.Response, *url.URL, error) {
	return c.request(ctx, http.MethodGet, u, header)
}

// request is get with another method (HEAD).
func (c *Connector) request(ctx context.Context, method, u string, header http.Header) (*http.Response, *url.URL, error) {
	for range MaxRedirects + 1 {
		if err := safehttp.CheckURL(u, c.cfg.AllowPrivate); err != nil {
			return nil, nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, nil, apiary.Wrap(err, apiary.KindInvalid, "web: the URL does not parse")
		}
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", c.cfg.UserAgent)
		resp, err := c.cfg.Client.Do(req)
		if err != nil {
			// The transport's error names the URL, whose query may be
			// private: keep only its cause.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			if errors.Is(err, safehttp.ErrForbiddenAddress) {
				return nil, nil, apiary.Wrap(err, apiary.KindInvalid, "web: the site's address is refused")
			}
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, apiary.Wrap(err, apiary.KindUnavailable, "web: the site did not answer")
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			drain(resp)
			if err != nil || resp.Header.Get("Location") == "" {
				return nil, nil, apiary.E(apiary.KindInvalid, "web: a redirect without a usable Location")
			}
			u = loc.String()
			continue
		}
		return resp, resp.Request.URL, nil
	}
	return nil, nil, apiary.E(apiary.KindInvalid, "web: more than %d redirects", MaxRedirects)
}

func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close()
}

// robotsFor fetches and parses the robots.txt of site's host.
func (c *Connector) robotsFor(ctx context.Context, site *url.URL) (*robots, error) {
	u := site.Scheme + "://" + site.Host + "/robots.txt"
	resp, _, err := c.get(ctx, u, nil)
	if err != nil {
		if apiary.KindOf(err) == apiary.KindUnavailable {
			return nil, errRobotsUnreachable(err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		return nil, c.Classify(resp, "fetch robots.txt")
	case s >= 500:
		return nil, errRobotsUnreachable(c.Classify(resp, "fetch robots.txt"))
	case s >= 400:
		return allowAll, nil // §2.3.1.3: unavailable, allow all
	case s >= 300:
		return allowAll, nil // more redirects than we follow: treated as unavailable
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxRobotsBytes))
	if err != nil {
		return nil, errRobotsUnreachable(err)
	}
	return parseRobots(b, c.token), nil
}

// errRobotsUnreachable is a robots.txt that cannot be read: RFC 9309
// §2.3.1.4 disallows the whole site then, so the listing fails, kind
// Unavailable (workers retry it), keeping the server's delay if it named one.
func errRobotsUnreachable(cause error) error {
	e := apiary.E(apiary.KindUnavailable, "web: the site's robots.txt is unreachable, which disallows crawling until it answers")
	e.Err = cause
	if d, ok := apiary.RetryDelay(cause); ok {
		e.RetryAfter = d
	}
	return e
}

// state is what a cursor holds.
type state struct {
	Crawl    bool         `json:"c,omitempty"`
	Sitemaps []sitemapRef `json:"s,omitempty"` // sitemaps left, the current one first
	Offset   int          `json:"o,omitempty"` // entries of Sitemaps[0] already read
	Fetched  int          `json:"f,omitempty"` // sitemaps fetched so far
	Frontier []string     `json:"q,omitempty"` // crawl: pages queued, the next first
	Seen     []uint64     `json:"-"`           // hashes of the URLs listed or queued
	Packed   []byte       `json:"h,omitempty"` // Seen, 8 bytes each, in the cursor
	Emitted  int          `json:"n,omitempty"` // items listed so far
	Picks    uint64       `json:"k,omitempty"` // picked listing: hash of the source and its picks
	Pick     int          `json:"p,omitempty"` // picked listing: the next pick's index
	seen     map[uint64]bool
}

var errForeignCursor = apiary.E(apiary.KindInvalid, "web: the cursor is not one of ours")

type sitemapRef struct {
	URL   string `json:"u"`
	Depth int    `json:"d,omitempty"`
}

func (s *state) encode() connectors.Cursor {
	s.Packed = make([]byte, 0, 8*len(s.Seen))
	for _, h := range s.Seen {
		s.Packed = binary.BigEndian.AppendUint64(s.Packed, h)
	}
	return connectors.EncodeCursor(s)
}

func decodeCursor(c connectors.Cursor) (*state, error) {
	var s state
	if !connectors.DecodeCursor(c, &s) || len(s.Packed)%8 != 0 {
		return nil, errForeignCursor
	}
	for b := s.Packed; len(b) > 0; b = b[8:] {
		s.Seen = append(s.Seen, binary.BigEndian.Uint64(b))
	}
	s.Packed = nil
	s.seen = make(map[uint64]bool, len(s.Seen))
	for _, h := range s.Seen {
		s.seen[h] = true
	}
	return &s, nil
}

func hashURL(u string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(u))
	return h.Sum64()
}

// mark records u as seen and reports whether it was new.
func (s *state) mark(u string) bool {
	h := hashURL(u)
	if s.seen[h] {
		return false
	}
	s.seen[h] = true
	s.Seen = append(s.Seen, h)
	return true
}

// normalize resolves ref against base and returns it without fragment,
// when it is an http(s) URL of base's scheme and host.
func normalize(base *url.URL, ref string) (string, bool) {
	ref = strings.TrimSpace(ref)
	if ref == "" || len(ref) > maxURLLen {
		return "", false
	}
	u, err := base.Parse(ref)
	if err != nil || u.Scheme != base.Scheme || !strings.EqualFold(u.Host, base.Host) || u.User != nil {
		return "", false
	}
	u.Fragment, u.RawFragment = "", ""
	u.Host = strings.ToLower(u.Host)
	if u.Path == "" {
		u.Path = "/"
	}
	return u.String(), true
}

// isSitemapURL tells a sitemap location from a page to crawl from.
func isSitemapURL(u *url.URL) bool {
	p := strings.ToLower(u.Path)
	return strings.HasSuffix(p, ".xml") || strings.HasSuffix(p, ".xml.gz") || strings.Contains(p, "sitemap")
}

// List returns a page of the site's pages. src.Location is a sitemap URL
// (a path ending .xml or .xml.gz, or naming "sitemap") or a page URL to
// crawl the host from.
func (c *Connector) List(ctx context.Context, src connectors.Source, cursor connectors.Cursor) (connectors.Page, error) {
	if err := safehttp.CheckURL(src.Location, c.cfg.AllowPrivate); err != nil {
		return connectors.Page{}, err
	}
	site, _ := url.Parse(src.Location)
	limit := src.MaxItems
	if limit <= 0 {
		limit = DefaultMaxPages
	}
	limit = min(limit, HardMaxPages)
	if len(src.Items) > 0 {
		return c.listPicked(ctx, site, src, cursor, limit)
	}

	var st *state
	if cursor == "" {
		st = &state{seen: map[uint64]bool{}}
		if isSitemapURL(site) {
			st.Sitemaps = []sitemapRef{{URL: site.String()}}
		} else {
			root, _ := normalize(site, site.String())
			st.Crawl, st.Frontier = true, []string{root}
			st.mark(root)
		}
	} else {
		var err error
		if st, err = decodeCursor(cursor); err != nil {
			return connectors.Page{}, err
		}
		if st.Picks != 0 {
			return connectors.Page{}, errForeignCursor
		}
	}
	rules, err := c.robotsFor(ctx, site)
	if err != nil {
		return connectors.Page{}, err
	}
	var items []connectors.Item
	if st.Crawl {
		items, err = c.crawl(ctx, site, rules, st, limit)
	} else {
		items, err = c.readSitemaps(ctx, site, rules, st, limit, src.Location)
	}
	if err != nil {
		return connectors.Page{}, err
	}
	page := connectors.Page{Items: items}
	if st.Emitted < limit && (len(st.Sitemaps) > 0 || len(st.Frontier) > 0) {
		page.Next = st.encode()
	}
	return page, nil
}

// readSitemaps reads entries from st's sitemaps until a page is full: an
// index's entries replace it at the front of the queue, a urlset's are
// listed from st.Offset on.
func (c *Connector) readSitemaps(ctx context.Context, site *url.URL, rules *robots, st *state, limit int, root string) ([]connectors.Item, error) {
	var items []connectors.Item
	for len(st.Sitemaps) > 0 && len(items) < c.cfg.PageSize && st.Emitted < limit {
		cur := st.Sitemaps[0]
		var children []sitemapRef
		pos, full := 0, false
		isIndex, err := c.fetchSitemap(ctx, cur.URL, func(e entry, index bool) bool {
			if index {
				u, ok := normalize(site, e.loc)
				if ok && cur.Depth+1 <= MaxSitemapDepth && st.Fetched+len(st.Sitemaps)+len(children) < MaxSitemaps {
					children = append(children, sitemapRef{URL: u, Depth: cur.Depth + 1})
				}
				return true
			}
			pos++
			if pos <= st.Offset {
				return true
			}
			if len(items) >= c.cfg.PageSize || st.Emitted >= limit {
				full = true
				return false
			}
			st.Offset = pos
			u, ok := normalize(site, e.loc)
			if !ok || !rules.allowed(requestPath(u)) || !st.mark(u) {
				return true
			}
			items = append(items, connectors.Item{ID: u, Size: -1, Version: e.lastmod, Modified: parseTime(e.lastmod)})
			st.Emitted++
			return true
		})
		switch {
		case err == nil:
		case cur.URL != root && errors.Is(err, connectors.ErrGone):
			// A sitemap an index names but the site lacks: skip it.
		case apiary.KindOf(err) == apiary.KindTooLarge || cur.URL != root && apiary.KindOf(err) == apiary.KindInvalid:
			// Over the cap, or a broken child: what was read counts.
		default:
			return nil, err
		}
		if full {
			break
		}
		st.Sitemaps, st.Offset = st.Sitemaps[1:], 0
		st.Fetched++
		if isIndex {
			st.Sitemaps = append(children, st.Sitemaps...)
		}
	}
	return items, nil
}

// fetchSitemap fetches u and streams its entries to visit.
func (c *Connector) fetchSitemap(ctx context.Context, u string, visit func(e entry, index bool) bool) (bool, error) {
	resp, _, err := c.get(ctx, u, nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if err := c.Classify(resp, "fetch a sitemap"); err != nil {
		return false, err
	}
	body := connectors.LimitBody(resp.Body, c.cfg.MaxSitemapBytes, "the sitemap")
	return parseSitemap(body, c.cfg.MaxSitemapBytes, visit)
}

// crawl visits st's frontier breadth first until a page is full, queueing
// the same-host links of each HTML page while fewer than limit URLs have
// been seen. A page that is gone, refused or broken is skipped; one over
// the size cap is listed (its fetch will say so) without its links.
func (c *Connector) crawl(ctx context.Context, site *url.URL, rules *robots, st *state, limit int) ([]connectors.Item, error) {
	var items []connectors.Item
	for len(st.Frontier) > 0 && len(items) < c.cfg.PageSize && st.Emitted < limit {
		u := st.Frontier[0]
		if !rules.allowed(requestPath(u)) {
			st.Frontier = st.Frontier[1:]
			continue
		}
		item, links, err := c.visit(ctx, site, u)
		switch k := apiary.KindOf(err); {
		case err == nil, k == apiary.KindTooLarge:
			items = append(items, item)
			st.Emitted++
		case k == apiary.KindNotFound, k == apiary.KindForbidden, k == apiary.KindInvalid:
			// not a page to list
		default:
			return nil, err // the same cursor retries this page
		}
		st.Frontier = st.Frontier[1:]
		for _, l := range links {
			if len(st.Seen) >= limit {
				break
			}
			if rules.allowed(requestPath(l)) && st.mark(l) {
				st.Frontier = append(st.Frontier, l)
			}
		}
	}
	return items, nil
}

// maxLinksPerPage bounds the links one page may add to the crawl.
const maxLinksPerPage = 10_000

// visit fetches the page at u and returns it as an item with the same-host
// links of its HTML.
func (c *Connector) visit(ctx context.Context, site *url.URL, u string) (connectors.Item, []string, error) {
	resp, final, err := c.get(ctx, u, nil)
	if err != nil {
		return connectors.Item{}, nil, err
	}
	defer drain(resp)
	if err := c.Classify(resp, "crawl a page"); err != nil {
		return connectors.Item{}, nil, err
	}
	item := connectors.Item{ID: u, ContentType: resp.Header.Get("Content-Type"), Size: resp.ContentLength, Version: versionOf(resp.Header)}
	item.Modified, _ = http.ParseTime(resp.Header.Get("Last-Modified"))
	if resp.ContentLength > c.cfg.MaxBytes {
		return item, nil, connectors.TooLarge("the page", c.cfg.MaxBytes)
	}
	if !isHTML(item.ContentType) {
		return item, nil, nil
	}
	var links []string
	z := html.NewTokenizer(connectors.LimitBody(resp.Body, c.cfg.MaxBytes, "the page"))
	for len(links) < maxLinksPerPage {
		tt := z.Next()
		if tt == html.ErrorToken {
			if err := z.Err(); err != io.EOF && apiary.KindOf(err) == apiary.KindTooLarge {
				return item, nil, err
			}
			break
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		name, hasAttr := z.TagName()
		if atom.Lookup(name) != atom.A || !hasAttr {
			continue
		}
		for {
			k, v, more := z.TagAttr()
			if string(k) == "href" {
				if l, ok := normalize(final, string(v)); ok {
					if l2, ok := normalize(site, l); ok {
						links = append(links, l2)
					}
				}
			}
			if !more {
				break
			}
		}
	}
	return item, links, nil
}

func isHTML(contentType string) bool {
	ct := strings.ToLower(contentType)
	return strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "application/xhtml+xml")
}

// versionOf is a response's content version: its ETag, else Last-Modified.
func versionOf(h http.Header) string {
	if e := h.Get("ETag"); e != "" {
		return e
	}
	return h.Get("Last-Modified")
}

// requestPath is what robots.txt rules match: the escaped path and query.
func requestPath(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "/"
	}
	return p.RequestURI()
}

// parseTime reads a sitemap's W3C datetime or an HTTP date; zero when it
// is neither.
func parseTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02", http.TimeFormat} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// Open fetches item's page. Item.Seen makes it conditional: an ETag is sent
// as If-None-Match, a date as If-Modified-Since.
func (c *Connector) Open(ctx context.Context, item connectors.Item) (*connectors.Content, error) {
	if item.Size > c.cfg.MaxBytes {
		return nil, connectors.TooLarge("the page", c.cfg.MaxBytes)
	}
	h := http.Header{}
	switch seen := item.Seen; {
	case seen == "":
	case strings.HasPrefix(seen, `"`) || strings.HasPrefix(seen, `W/"`):
		h.Set("If-None-Match", seen)
	default:
		if t := parseTime(seen); !t.IsZero() {
			h.Set("If-Modified-Since", t.UTC().Format(http.TimeFormat))
		}
	}
	resp, _, err := c.get(ctx, item.ID, h)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotModified {
		drain(resp)
		return nil, connectors.ErrNotModified
	}
	if err := c.Classify(resp, "fetch a page"); err != nil {
		drain(resp)
		return nil, err
	}
	if resp.ContentLength > c.cfg.MaxBytes {
		_ = resp.Body.Close() // not drained: the rest is not read
		return nil, connectors.TooLarge("the page", c.cfg.MaxBytes)
	}
	content := &connectors.Content{
		Body:        connectors.LimitBody(resp.Body, c.cfg.MaxBytes, "the page"),
		ContentType: resp.Header.Get("Content-Type"),
		Version:     versionOf(resp.Header),
	}
	if content.ContentType == "" {
		content.ContentType = item.ContentType
	}
	if content.Version == "" {
		content.Version = item.Version
	}
	return content, nil
}

// listPicked returns the page of src's picked pages that starts at cursor:
// at most PageSize of them, in the order picked, each described by a HEAD
// (a GET, closed unread, when the site refuses HEAD).
func (c *Connector) listPicked(ctx context.Context, site *url.URL, src connectors.Source, cursor connectors.Cursor, limit int) (connectors.Page, error) {
	urls, err := pickedURLs(site, src.Items, limit)
	if err != nil {
		return connectors.Page{}, err
	}
	h := fnv.New64a()
	h.Write([]byte(src.Location))
	for _, u := range urls {
		h.Write([]byte{0})
		h.Write([]byte(u))
	}
	picks, start := h.Sum64(), 0
	if cursor != "" {
		st, err := decodeCursor(cursor)
		if err != nil || st.Picks != picks || st.Pick <= 0 || st.Pick >= len(urls) {
			return connectors.Page{}, errForeignCursor
		}
		start = st.Pick
	}
	rules, err := c.robotsFor(ctx, site)
	if err != nil {
		return connectors.Page{}, err
	}
	for i, u := range urls {
		if !rules.allowed(requestPath(u)) {
			return connectors.Page{}, apiary.E(apiary.KindForbidden, "web: the site's robots.txt disallows the picked page at index %d", i)
		}
	}
	end := min(start+c.cfg.PageSize, len(urls))
	var page connectors.Page
	for _, u := range urls[start:end] {
		item, err := c.describe(ctx, u)
		if err != nil {
			return connectors.Page{}, err
		}
		page.Items = append(page.Items, item)
	}
	if end < len(urls) {
		page.Next = (&state{Picks: picks, Pick: end}).encode()
	}
	return page, nil
}

// pickedURLs reads the picked URLs: each absolute, of the source's scheme
// and host, picked once (fragments aside); at most limit of them. They are
// returned normalized, as a listing names them. Errors name a pick by its
// index, not by its URL (whose query may be private).
func pickedURLs(site *url.URL, items []string, limit int) ([]string, error) {
	if len(items) > limit {
		return nil, apiary.E(apiary.KindInvalid, "web: %d pages are picked, more than the listing's cap of %d", len(items), limit)
	}
	urls := make([]string, len(items))
	seen := make(map[string]bool, len(items))
	for i, raw := range items {
		p, err := url.Parse(strings.TrimSpace(raw))
		u, ok := "", false
		if err == nil && p.IsAbs() && p.Host != "" {
			u, ok = normalize(site, raw)
		}
		switch {
		case !ok:
			return nil, apiary.E(apiary.KindInvalid, "web: the picked page at index %d is not an absolute URL of the source's scheme and host", i)
		case seen[u]:
			return nil, apiary.E(apiary.KindInvalid, "web: the picked page at index %d is picked twice", i)
		}
		seen[u] = true
		urls[i] = u
	}
	return urls, nil
}

// describe returns the item of the page at u from a HEAD, or from a GET
// closed unread when the site does not answer HEAD (405, 501).
func (c *Connector) describe(ctx context.Context, u string) (connectors.Item, error) {
	resp, _, err := c.request(ctx, http.MethodHead, u, nil)
	if err == nil && (resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented) {
		drain(resp)
		resp, _, err = c.get(ctx, u, nil)
	}
	if err != nil {
		return connectors.Item{}, err
	}
	defer resp.Body.Close() // unread: a GET's rest is not wanted
	if err := c.Classify(resp, "describe a picked page"); err != nil {
		return connectors.Item{}, err
	}
	item := connectors.Item{ID: u, ContentType: resp.Header.Get("Content-Type"), Size: resp.ContentLength, Version: versionOf(resp.Header)}
	item.Modified, _ = http.ParseTime(resp.Header.Get("Last-Modified"))
	return item, nil
}
