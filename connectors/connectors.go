package connectors

import (
	"context"
	"errors"
	"io"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
)

// Connector reads documents from one kind of source. Listing and fetching
// are apart, so that a sync diffs versions without downloading content:
//
//   - List returns one page of item metadata, each with its content version,
//     and the cursor of the next page. Listing a whole source is a loop of
//     List calls (or All), each page bounded by the connector's page size:
//     a connector never holds a whole source in memory. A cursor is opaque,
//     printable and safe to store: listing resumed from the cursor of page
//     n yields the items after page n, none twice.
//   - Open streams one item's content, bounded by the connector's size cap:
//     an item known to be over it fails before any byte is read, and the
//     body errors with kind TooLarge as soon as it passes the cap.
//
// Errors carry apiary kinds, classified from the vendor's answers by the
// connector's own Classify (the same status means different things per
// vendor): KindUnauthenticated (a missing, expired or revoked credential),
// KindForbidden (the credential lacks the right), ErrGone (the item or
// source no longer exists: kind NotFound), KindRateLimited with
// apiary.Error.RetryAfter (the vendor asked to wait; workers retry after
// it), KindUnavailable (the vendor is down; retried), KindInvalid (the
// source or cursor is wrong and will stay wrong), KindTooLarge. Errors
// never hold a credential or document text.
//
// A Connector is safe for concurrent use; it is bound to its credential
// and configuration when constructed by its package.
type Connector interface {
	// List returns the page of src's items that starts at cursor ("" is
	// the first page). Page.Next is "" after the last page.
	List(ctx context.Context, src Source, cursor Cursor) (Page, error)
	// Open streams item's content. The caller closes the body. When
	// item.Seen is set and the connector can ask conditionally (ETag,
	// revision), an unchanged item fails with ErrNotModified.
	Open(ctx context.Context, item Item) (*Content, error)
}

// Source says what to list, in the connector's terms: a page or sitemap URL
// (web), a bucket and prefix "bucket/prefix" (S3), a folder or drive id.
type Source struct {
	// Location is what to list; its form is the connector's.
	Location string
	// MaxItems caps how many items the whole listing yields (web's
	// max_pages); 0 is the connector's default, and every connector has a
	// hard cap of its own.
	MaxItems int
	// Items, when set, are the only items to list: ids as the connector
	// lists them (file ids, page ids, paths), picked by the caller (a
	// Drive picker with the drive.file scope). The listing yields each
	// one's metadata, in order, paged like any listing; an id gone at the
	// source fails the listing with ErrGone naming no id.
	Items []string
}

// ChangeFeed is implemented by connectors whose vendor lists changes since
// a point (Drive's changes with startPageToken, Graph's delta with
// deltaLink, Notion's search by last_edited_time, Confluence's CQL
// lastmodified, GitHub's tree diff by blob sha). A sync asks StartToken
// before its first full listing, so that nothing changed during that
// listing is lost, then Changes from the token it kept.
type ChangeFeed interface {
	// StartToken returns the token of now for src: Changes from it lists
	// what changes afterwards.
	StartToken(ctx context.Context, src Source) (Cursor, error)
	// Changes returns one page of what changed in src after token:
	// items added or changed (with their versions), and ids removed at
	// the source (or moved out of src). Changes.Next continues the page
	// run; when it is "", Changes.Token is the token for the next sync.
	// An item may be listed more than once in a run; a token the vendor
	// no longer honours fails with KindInvalid, and the caller falls back
	// to a full listing.
	Changes(ctx context.Context, src Source, token Cursor) (Changes, error)
}

// Changes is one page of a change feed.
type Changes struct {
	Items   []Item
	Removed []string
	// Next continues this run of pages; "" on the last page.
	Next Cursor
	// Token is, on the last page, where the next sync resumes.
	Token Cursor
}

// Cursor resumes a listing. It is opaque to everyone but its connector,
// printable, and holds no credential.
type Cursor string

// Page is one page of a listing.
type Page struct {
	Items []Item
	// Next resumes the listing after this page; "" when there is no more.
	Next Cursor
}

// Item is one document at the source, as listed: no content.
type Item struct {
	// ID identifies the item at the source, stable across listings: a URL,
	// an object key, a file id. Connectors derive document ids from it.
	ID string
	// Name is a title or file name, for extraction's format detection and
	// for display; may be empty.
	Name string
	// ContentType is the vendor's media type, when it says one.
	ContentType string
	// Size is the content's size in bytes, -1 when the listing does not
	// say.
	Size int64
	// Version is the content version as listed (ETag, blob sha, revision,
	// last-modified): when it equals the version ingested last time, the
	// item is unchanged. "" when the listing cannot tell; then only a
	// fetch (conditional where the vendor allows) can.
	Version string
	// Modified is when the item last changed, zero when unknown.
	Modified time.Time
	// Seen is the version recorded by the last sync, set by the caller
	// before Open to make the fetch conditional.
	Seen string
}

// Content is an opened item.
type Content struct {
	// Body is the content, bounded by the connector's size cap. Bytes pass
	// through as the source has them (no charset conversion: extraction
	// decides).
	Body io.ReadCloser
	// ContentType is the media type the fetch answered, else the listed one.
	ContentType string
	// Version is the content version the fetch answered (an ETag), else
	// the listed one.
	Version string
}

// ErrNotModified is Open's answer to a conditional fetch of an unchanged
// item (errors.Is). Its kind is Conflict: nothing to do, nothing to retry.
var ErrNotModified = &apiary.Error{Kind: apiary.KindConflict, Msg: "the item has not changed"}

// errGone is the cause under every gone error, so that errors.Is finds it
// whatever message a connector gives.
var errGone = errors.New("connectors: gone")

// ErrGone matches (errors.Is) every error saying the item or the source no
// longer exists (404, 410, a deleted file). Its kind is NotFound: a sync
// removes the document, a worker does not retry.
var ErrGone = errGone

// Gone returns a gone error with a caller-safe message.
func Gone(format string, args ...any) error {
	return apiary.Wrap(errGone, apiary.KindNotFound, format, args...)
}

// RetryAfter returns a rate-limited error that carries the vendor's delay,
// so that workers retry after d (apiary.RetryDelay). d ≤ 0 means the vendor
// named none: DefaultRetryAfter.
func RetryAfter(d time.Duration, format string, args ...any) error {
	if d <= 0 {
		d = DefaultRetryAfter
	}
	e := apiary.E(apiary.KindRateLimited, format, args...)
	e.RetryAfter = d
	return e
}

// DefaultRetryAfter is the delay of a rate limit that named none.
const DefaultRetryAfter = 30 * time.Second

// MaxRetryAfter caps a vendor's Retry-After: a hostile or broken server
// cannot park a job for days.
const MaxRetryAfter = time.Hour

// ParseRetryAfter reads a Retry-After header (delay seconds or an HTTP
// date, RFC 9110 §10.2.3) relative to now, capped at MaxRetryAfter. It
// returns 0 when the header is absent or unreadable.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		if n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// ClassifyStatus is the common reading of an HTTP answer, for connectors
// whose vendor has no quirk at that status; a connector's Classify handles
// its vendor's quirks first and falls back to it. what names the request
// in the message ("list the sitemap"). It returns nil for 2xx and 304.
func ClassifyStatus(resp *http.Response, what string) error {
	s := resp.StatusCode
	switch {
	case s >= 200 && s < 300, s == http.StatusNotModified:
		return nil
	case s == http.StatusUnauthorized:
		return apiary.E(apiary.KindUnauthenticated, "%s: the source refused the credential (it may have expired)", what)
	case s == http.StatusForbidden:
		return apiary.E(apiary.KindForbidden, "%s: the credential may not read this", what)
	case s == http.StatusNotFound || s == http.StatusGone:
		return Gone("%s: not found at the source (%d)", what, s)
	case s == http.StatusTooManyRequests:
		return RetryAfter(ParseRetryAfter(resp.Header, time.Now()), "%s: the source is rate limiting", what)
	case s == http.StatusRequestEntityTooLarge:
		return apiary.E(apiary.KindTooLarge, "%s: the source says the item is too large", what)
	case s >= 500:
		e := apiary.E(apiary.KindUnavailable, "%s: the source answered %d", what, s)
		e.RetryAfter = ParseRetryAfter(resp.Header, time.Now())
		return e
	default:
		return apiary.E(apiary.KindInvalid, "%s: the source answered %d", what, s)
	}
}

// TooLarge is the error of content over a size cap of max bytes.
func TooLarge(what string, max int64) error {
	return apiary.E(apiary.KindTooLarge, "%s is larger than %d bytes", what, max)
}

// LimitBody bounds rc at max bytes: reading past max fails with TooLarge
// (having read max+1 bytes at most, never the rest); Close closes rc.
func LimitBody(rc io.ReadCloser, max int64, what string) io.ReadCloser {
	return &limited{rc: rc, left: max, max: max, what: what}
}

type limited struct {
	rc   io.ReadCloser
	left int64
	max  int64
	what string
}

func (l *limited) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, TooLarge(l.what, l.max)
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n + int(l.left), TooLarge(l.what, l.max)
	}
	return n, err
}

func (l *limited) Close() error { return l.rc.Close() }

// All yields every item of src from cursor on, a page at a time (one page
// in memory), and stops at the first error, yielding it. Callers that must
// resume after a crash list page by page with List and store Page.Next.
func All(ctx context.Context, c Connector, src Source, cursor Cursor) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		for {
			page, err := c.List(ctx, src, cursor)
			if err != nil {
				yield(Item{}, err)
				return
			}
			for _, it := range page.Items {
				if !yield(it, nil) {
					return
				}
			}
			if page.Next == "" {
				return
			}
			cursor = page.Next
		}
	}
}
