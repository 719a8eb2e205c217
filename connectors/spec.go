package connectors

import (
	"encoding/base64"
	"encoding/json"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/safehttp"
)

// Limits of a listing, whatever the connector.
const (
	// DefaultMaxItems is a listing's cap when the request names none
	// (web's max_pages).
	DefaultMaxItems = 500
	// HardMaxItems is the most a request may ask for.
	HardMaxItems = 5000
)

// Spec is what an ingestion request asks of a connector: the provider and
// its source. It names no credential, and travels to the worker only in
// the job's sealed stage (SpecDocument), never in a queue message or a
// record: a URL may carry a secret in its query.
type Spec struct {
	Provider string // "web", "s3", or one of TokenProviders
	URL      string // web: a sitemap or page URL
	MaxItems int    // web: max_pages; others: the listing's cap; 0 is DefaultMaxItems

	// s3: the bucket, a key prefix ("" is the whole bucket), the bucket's
	// region ("" is us-east-1) and an S3-compatible endpoint ("" is AWS).
	Bucket, Prefix, Region, Endpoint string

	// The token providers (TokenProviders): Location is what to read in
	// the connector's own form ("" is everything the grant reaches; a
	// folder, a drive, a space, a repository), Items the ids picked (nil:
	// all of Location), Site the Atlassian cloud id (confluence).
	Location string
	Items    []string
	Site     string
	// Connection is the OAuth connection that reads the source; "" when
	// the request brought an ephemeral access token instead (held in
	// custody, never here).
	Connection string
	// Sync makes the job a sync of a connection's source: items whose
	// version did not change since they were ingested are not fetched
	// again, and documents gone from the source are deleted.
	Sync bool
}

// Identity is what tells s's source apart from others: provider,
// connection, endpoint, location, site and picked items. Documents record
// it (as a keyed fingerprint) so that a sync finds those it brought.
func (s Spec) Identity() []string {
	items, _ := json.Marshal(s.Items)
	return []string{s.Provider, s.Connection, s.Endpoint, s.Region, s.SourceLocation(), s.Site, string(items)}
}

// Providers names the providers a source request may name.
const Providers = "web, s3, gdrive, sharepoint, notion, confluence, github"

// TokenProviders map the providers that read with a bearer token (an
// OAuth connection's, or an ephemeral access_token) to the OAuth provider
// whose connections they read with.
var TokenProviders = map[string]string{
	"gdrive":     "google",
	"sharepoint": "microsoft",
	"notion":     "notion",
	"confluence": "atlassian",
	"github":     "github",
}

// ProviderOf returns the source provider that reads through a connection
// of OAuth provider oauth ("google" → "gdrive"), "" when none does.
func ProviderOf(oauth string) string {
	for p, o := range TokenProviders {
		if o == oauth {
			return p
		}
	}
	return ""
}

// NeedsCredential reports whether s's provider reads with the request's
// ephemeral credential (held in custody, never in the spec): an s3 access
// key, or the access token of a token provider without a connection.
func (s Spec) NeedsCredential() bool {
	_, token := TokenProviders[s.Provider]
	return s.Provider == "s3" || (token && s.Connection == "")
}

var (
	bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	regionName = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+){1,4}$`)
	siteName   = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
)

// Bounds of a token provider's spec.
const (
	maxPrefixLen   = 1024 // S3's longest key
	maxLocationLen = 1024
	maxItemIDLen   = 1024
)

// Validate checks s as the API receives it: a known provider, a URL that
// passes the SSRF guard (allowPrivate: --allow-private-sources), a cap of
// 1 to HardMaxItems.
func (s Spec) Validate(allowPrivate bool) error {
	if _, ok := TokenProviders[s.Provider]; ok {
		return s.validateToken()
	}
	switch s.Provider {
	case "web":
	case "s3":
		return s.validateS3(allowPrivate)
	case "":
		return apiary.E(apiary.KindInvalid, "source.provider is required; the providers are: %s", Providers)
	default:
		return apiary.E(apiary.KindInvalid, "source.provider %q is unknown; the providers are: %s", s.Provider, Providers)
	}
	if s.Bucket != "" || s.Prefix != "" || s.Region != "" || s.Endpoint != "" {
		return apiary.E(apiary.KindInvalid, "source: bucket, prefix, region and endpoint are for the s3 provider, not web")
	}
	if err := s.noTokenFields(); err != nil {
		return err
	}
	if s.URL == "" {
		return apiary.E(apiary.KindInvalid, "source.url is required for the web provider: a sitemap or a page URL")
	}
	if err := safehttp.CheckURL(s.URL, allowPrivate); err != nil {
		return apiary.Wrap(err, apiary.KindInvalid, "source.url: %s", apiary.Message(err))
	}
	if s.MaxItems < 0 || s.MaxItems > HardMaxItems {
		return apiary.E(apiary.KindInvalid, "source.max_pages must be 1 to %d", HardMaxItems)
	}
	return nil
}

func (s Spec) noTokenFields() error {
	if s.Sync {
		return apiary.E(apiary.KindInvalid, "source: only a connection's source can be synced; %s has no connections", s.Provider)
	}
	if s.Location != "" || s.Items != nil || s.Site != "" || s.Connection != "" {
		return apiary.E(apiary.KindInvalid, "source: location, items, site and connection_id are for the providers that read with a token (%s), not %s", tokenProviderNames(), s.Provider)
	}
	return nil
}

func tokenProviderNames() string {
	names := make([]string, 0, len(TokenProviders))
	for p := range TokenProviders {
		names = append(names, p)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func (s Spec) validateToken() error {
	if s.URL != "" || s.Bucket != "" || s.Prefix != "" || s.Region != "" || s.Endpoint != "" {
		return apiary.E(apiary.KindInvalid, "source: url, bucket, prefix, region and endpoint are not %s's; name what to read with location and items", s.Provider)
	}
	if len(s.Location) > maxLocationLen || !printable(s.Location) {
		return apiary.E(apiary.KindInvalid, "source.location must be printable UTF-8 of at most %d bytes", maxLocationLen)
	}
	if s.MaxItems < 0 || s.MaxItems > HardMaxItems {
		return apiary.E(apiary.KindInvalid, "source.max_items must be 1 to %d", HardMaxItems)
	}
	if s.Items != nil && len(s.Items) == 0 {
		return apiary.E(apiary.KindInvalid, `source.items must name at least one item, or be "all"`)
	}
	if len(s.Items) > HardMaxItems {
		return apiary.E(apiary.KindInvalid, "source.items names %d items; at most %d per request", len(s.Items), HardMaxItems)
	}
	for i, id := range s.Items {
		if id == "" || len(id) > maxItemIDLen || !printable(id) {
			return apiary.E(apiary.KindInvalid, "source.items[%d] must be a printable id of 1 to %d bytes", i, maxItemIDLen)
		}
	}
	if s.Provider == "confluence" && !siteName.MatchString(s.Site) {
		return apiary.E(apiary.KindInvalid, "source.site is required for confluence: the Atlassian cloud id of the site (from accessible-resources)")
	}
	if s.Provider != "confluence" && s.Site != "" {
		return apiary.E(apiary.KindInvalid, "source.site is for the confluence provider")
	}
	if s.Sync && s.Connection == "" {
		return apiary.E(apiary.KindInvalid, "source: a sync needs a connection (connection_id); an ephemeral token cannot be synced, scheduled or kept")
	}
	if s.Connection != "" && !printable(s.Connection) {
		return apiary.E(apiary.KindInvalid, "source.connection_id is not a connection id")
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func (s Spec) validateS3(allowPrivate bool) error {
	if s.URL != "" {
		return apiary.E(apiary.KindInvalid, "source.url is for the web provider; name an s3 source by bucket and prefix")
	}
	if err := s.noTokenFields(); err != nil {
		return err
	}
	if !bucketName.MatchString(s.Bucket) {
		return apiary.E(apiary.KindInvalid, "source.bucket is required for the s3 provider: a bucket name (3 to 63 of a-z, 0-9, '.', '-')")
	}
	if len(s.Prefix) > maxPrefixLen || !utf8.ValidString(s.Prefix) {
		return apiary.E(apiary.KindInvalid, "source.prefix must be valid UTF-8 of at most %d bytes", maxPrefixLen)
	}
	if s.Region != "" && !regionName.MatchString(s.Region) {
		return apiary.E(apiary.KindInvalid, "source.region must be an AWS region name, such as eu-west-1")
	}
	if s.Endpoint != "" {
		if err := safehttp.CheckURL(s.Endpoint, allowPrivate); err != nil {
			return apiary.Wrap(err, apiary.KindInvalid, "source.endpoint: %s", apiary.Message(err))
		}
	}
	if s.MaxItems != 0 {
		return apiary.E(apiary.KindInvalid, "source.max_pages is for the web provider")
	}
	return nil
}

// SourceLocation is the location the connector lists: "bucket/prefix"
// (s3), the URL (web), the connector's own form (token providers).
func (s Spec) SourceLocation() string {
	switch {
	case s.Provider == "s3":
		return s.Bucket + "/" + s.Prefix
	case s.Provider == "web":
		return s.URL
	}
	return s.Location
}

// specDocumentID names the one staged document of a source job: its spec.
const specDocumentID = "connector-source"

// Document is s as the one document staged for its job (sealed like any
// staged document).
func (s Spec) Document() apiary.Document {
	m := map[string]string{"provider": s.Provider, "url": s.URL, "max_items": strconv.Itoa(s.MaxItems)}
	if s.Provider == "s3" {
		m["bucket"], m["prefix"], m["region"], m["endpoint"] = s.Bucket, s.Prefix, s.Region, s.Endpoint
	}
	if _, ok := TokenProviders[s.Provider]; ok {
		m["location"], m["site"], m["connection"] = s.Location, s.Site, s.Connection
		if s.Sync {
			m["sync"] = "true"
		}
		if s.Items != nil {
			b, _ := json.Marshal(s.Items)
			m["items"] = string(b)
		}
	}
	return apiary.Document{ID: specDocumentID, Metadata: m}
}

// SpecFrom reads the spec staged for a source job by Spec.Document.
func SpecFrom(docs []apiary.Document) (Spec, error) {
	if len(docs) != 1 || docs[0].ID != specDocumentID {
		return Spec{}, apiary.Permanent(apiary.E(apiary.KindPermanent, "the job's source is missing"))
	}
	m := docs[0].Metadata
	n, _ := strconv.Atoi(m["max_items"])
	s := Spec{Provider: m["provider"], URL: m["url"], MaxItems: n,
		Bucket: m["bucket"], Prefix: m["prefix"], Region: m["region"], Endpoint: m["endpoint"],
		Location: m["location"], Site: m["site"], Connection: m["connection"], Sync: m["sync"] == "true"}
	if raw := m["items"]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &s.Items); err != nil {
			return Spec{}, apiary.Permanent(apiary.E(apiary.KindPermanent, "the job's source is damaged"))
		}
	}
	return s, nil
}

// DocumentID derives a stable document id from an item id (a URL, an
// object key): the item id itself when it is a valid document id, else
// its first 200 bytes (control characters and invalid UTF-8 dropped) and a
// hash of the whole.
func DocumentID(itemID string) apiary.DocumentID {
	id := apiary.DocumentID(itemID)
	if id.Validate() == nil {
		return id
	}
	h := fnv.New128a()
	h.Write([]byte(itemID))
	prefix := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(itemID, ""))
	if len(prefix) > 200 {
		prefix = strings.ToValidUTF8(prefix[:200], "")
	}
	return apiary.DocumentID(strings.TrimSpace(prefix) + "#" + base64.RawURLEncoding.EncodeToString(h.Sum(nil)))
}
