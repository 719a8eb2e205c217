package connectors

import (
	"encoding/base64"
	"hash/fnv"
	"regexp"
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
	Provider string // "web", "s3"
	URL      string // web: a sitemap or page URL
	MaxItems int    // web: max_pages; 0 is DefaultMaxItems

	// s3: the bucket, a key prefix ("" is the whole bucket), the bucket's
	// region ("" is us-east-1) and an S3-compatible endpoint ("" is AWS).
	Bucket, Prefix, Region, Endpoint string
}

// Providers names the providers a source request may name.
const Providers = "web, s3"

// NeedsCredential reports whether s's provider reads with the request's
// ephemeral credential (held in custody, never in the spec).
func (s Spec) NeedsCredential() bool { return s.Provider == "s3" }

var (
	bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	regionName = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+){1,4}$`)
)

// maxPrefixLen is S3's longest key.
const maxPrefixLen = 1024

// Validate checks s as the API receives it: a known provider, a URL that
// passes the SSRF guard (allowPrivate: --allow-private-sources), a cap of
// 1 to HardMaxItems.
func (s Spec) Validate(allowPrivate bool) error {
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

func (s Spec) validateS3(allowPrivate bool) error {
	if s.URL != "" {
		return apiary.E(apiary.KindInvalid, "source.url is for the web provider; name an s3 source by bucket and prefix")
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

// Location is the source location of an s3 spec: "bucket/prefix".
func (s Spec) Location() string {
	if s.Provider == "s3" {
		return s.Bucket + "/" + s.Prefix
	}
	return s.URL
}

// specDocumentID names the one staged document of a source job: its spec.
const specDocumentID = "connector-source"

// SpecDocument is s as the one document staged for its job.
func (s Spec) Document() apiary.Document {
	m := map[string]string{"provider": s.Provider, "url": s.URL, "max_items": strconv.Itoa(s.MaxItems)}
	if s.Provider == "s3" {
		m["bucket"], m["prefix"], m["region"], m["endpoint"] = s.Bucket, s.Prefix, s.Region, s.Endpoint
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
	return Spec{Provider: m["provider"], URL: m["url"], MaxItems: n,
		Bucket: m["bucket"], Prefix: m["prefix"], Region: m["region"], Endpoint: m["endpoint"]}, nil
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
