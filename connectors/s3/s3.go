// Package s3 is the Amazon S3 connector (and S3-compatible endpoints): it
// lists a bucket under a prefix with ListObjectsV2 and fetches objects with
// GetObject, through aws-sdk-go-v2.
//
// What it promises:
//   - A source is "bucket" or "bucket/prefix" (an "s3://" in front is
//     allowed). An item's ID is "s3://bucket/key"; keys ending in "/" (the
//     console's folder markers) are not listed.
//   - Listing is paginated by S3's continuation token: a List page asks for
//     at most Config.PageSize keys, and the cursor holds the token, the
//     count listed so far (the listing yields at most Source.MaxItems,
//     default connectors.DefaultMaxItems, at most connectors.HardMaxItems)
//     and a hash of the source, so that another source's cursor is invalid.
//   - Source.Items picks objects: each an item id as List yields it
//     ("s3://bucket/key", the full key), of the source's bucket and under
//     its prefix (else the listing is invalid, naming the pick's index, as
//     is a pick named twice, a folder marker, or more picks than
//     Source.MaxItems). The listing yields them in the order picked,
//     Config.PageSize a page, each described by HeadObject (size, ETag,
//     last-modified, content type; at most 8 at once); the cursor holds
//     the next pick's index and a hash of the source and its picks. A
//     pick gone at the source fails the listing with connectors.ErrGone,
//     naming no key. HeadObject's errors have no body: a 400, 403 or 404
//     is asked again as a GET of one byte, whose error names S3's code
//     (an expired credential is unauthenticated, a missing bucket
//     invalid, as in a listing).
//   - The content version is the object's ETag as listed: a sync diffs
//     without downloading. Open with Item.Seen asks with If-None-Match: an
//     unchanged object is connectors.ErrNotModified.
//   - Open checks the size before reading: an item listed, or answered
//     (Content-Length), over Config.MaxBytes fails with TooLarge and its
//     body is closed unread; the body is also bounded by connectors.LimitBody.
//     Bytes pass through as stored.
//   - The credential is an ephemeral one (New: a temporary access key id,
//     secret and session token), held in memory only, in a Credential that
//     redacts itself in every formatter, log and JSON encoding; or the
//     stored form (NewWithRole: a customer's IAM role, assumed through STS
//     AssumeRole with an ExternalId by Apiary's own AWS credentials, the
//     temporary keys cached in memory until shortly before they expire;
//     nothing secret is stored). Errors never carry a credential nor the
//     SDK's raw error (whose text may quote the request).
//   - The SDK does not retry: workers do, after the delay a rate limit
//     names. Errors are classified by Classify.
//   - Config.Endpoint names an S3-compatible endpoint (MinIO, R2, moto);
//     with it, requests go through the SSRF guard (internal/safehttp) unless
//     Config.AllowPrivate (--allow-private-sources), and Config.UsePathStyle
//     addresses buckets as a path rather than a host name.
package s3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/internal/safehttp"
)

// MaxPageSize is S3's own cap on the keys of one ListObjectsV2 answer.
const MaxPageSize = 1000

// Config configures the S3 connector. Zero values take the defaults.
type Config struct {
	// Region is the bucket's region. Default "us-east-1".
	Region string
	// Endpoint is an S3-compatible endpoint URL; "" is AWS's own.
	Endpoint string
	// UsePathStyle addresses buckets as endpoint/bucket/key (most
	// S3-compatible servers need it) rather than bucket.endpoint/key.
	UsePathStyle bool
	// AllowPrivate lets an Endpoint on a private or loopback host through
	// the SSRF guard (--allow-private-sources).
	AllowPrivate bool
	// HTTPClient makes the requests. Default: with an Endpoint,
	// safehttp.NewClient with AllowPrivate; else the SDK's own.
	HTTPClient *http.Client
	// PageSize is how many keys one List page asks for. Default and
	// maximum MaxPageSize.
	PageSize int
	// MaxBytes caps one object's content. Default 10 MiB.
	MaxBytes int64
	// Now tells the time, for Retry-After dates. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.PageSize <= 0 || c.PageSize > MaxPageSize {
		c.PageSize = MaxPageSize
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 10 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HTTPClient == nil && c.Endpoint != "" {
		c.HTTPClient = safehttp.NewClient(safehttp.Config{AllowPrivate: c.AllowPrivate})
	}
}

// Credential is an ephemeral AWS credential: a temporary access key id, its
// secret and its session token, as the caller passed them. It is kept in
// memory only and redacts itself wherever it is printed or encoded.
type Credential struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

const redacted = "s3.Credential(redacted)"

// String redacts the credential.
func (Credential) String() string { return redacted }

// GoString redacts the credential (%#v).
func (Credential) GoString() string { return redacted }

// Format redacts the credential under every verb (%v, %+v, %s, %q, %x…).
func (Credential) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// LogValue redacts the credential in slog.
func (Credential) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON redacts the credential.
func (Credential) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// Connector lists and fetches S3 objects with one credential. Safe for
// concurrent use.
type Connector struct {
	cfg    Config
	client *s3.Client
}

var _ connectors.Connector = (*Connector)(nil)

// New returns an S3 connector bound to cred. A credential without an access
// key id or secret, or an endpoint the SSRF guard refuses, is invalid.
func New(cfg Config, cred Credential) (*Connector, error) {
	if cred.AccessKeyID == "" || cred.SecretAccessKey == "" {
		return nil, apiary.E(apiary.KindInvalid, "s3: the credential needs an access key id and a secret access key")
	}
	return newConnector(cfg, credentials.NewStaticCredentialsProvider(cred.AccessKeyID, cred.SecretAccessKey, cred.SessionToken))
}

// Role is the stored form of the credential: a customer's IAM role that
// trusts Apiary's AWS account on the condition of ExternalID (the
// confused-deputy guard: one ExternalID per customer connection, chosen by
// Apiary). Neither is secret.
type Role struct {
	ARN        string
	ExternalID string
}

var (
	roleARN    = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$`)
	externalID = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
)

// RoleSessionName names Apiary's sessions in the customer's CloudTrail.
const RoleSessionName = "apiary-connector"

// NewWithRole returns an S3 connector that reads as role, assumed through
// STS with base (Apiary's own AWS configuration: its credentials, region,
// and BaseEndpoint for an STS-compatible server in tests). The temporary
// credentials are cached in memory and renewed before they expire. A
// refused AssumeRole (the role does not trust Apiary, or the ExternalID
// differs) surfaces from List and Open as forbidden.
func NewWithRole(cfg Config, base aws.Config, role Role) (*Connector, error) {
	if !roleARN.MatchString(role.ARN) {
		return nil, apiary.E(apiary.KindInvalid, "s3: role %q is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", role.ARN)
	}
	if n := len(role.ExternalID); n < 2 || n > 1224 || !externalID.MatchString(role.ExternalID) {
		return nil, apiary.E(apiary.KindInvalid, "s3: the role's external id must be 2 to 1224 of letters, digits and +=,.@:/-")
	}
	provider := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base, func(o *sts.Options) {
		o.Retryer = aws.NopRetryer{}
	}), role.ARN, func(o *stscreds.AssumeRoleOptions) {
		o.ExternalID = aws.String(role.ExternalID)
		o.RoleSessionName = RoleSessionName
	})
	return newConnector(cfg, aws.NewCredentialsCache(provider))
}

func newConnector(cfg Config, creds aws.CredentialsProvider) (*Connector, error) {
	cfg.setDefaults()
	if cfg.Endpoint != "" {
		if err := safehttp.CheckURL(cfg.Endpoint, cfg.AllowPrivate); err != nil {
			return nil, apiary.Wrap(err, apiary.KindInvalid, "s3: endpoint: %s", apiary.Message(err))
		}
	}
	opts := s3.Options{
		Region:       cfg.Region,
		Credentials:  creds,
		UsePathStyle: cfg.UsePathStyle,
		Retryer:      aws.NopRetryer{}, // workers retry, after the vendor's delay
	}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	if cfg.HTTPClient != nil {
		opts.HTTPClient = cfg.HTTPClient
	}
	return &Connector{cfg: cfg, client: s3.New(opts)}, nil
}

// bucketName is S3's rule for bucket names (3 to 63 lowercase letters,
// digits, dots and hyphens, starting and ending with a letter or digit).
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ParseSource reads a source location "bucket" or "bucket/prefix" (an
// "s3://" in front is allowed).
func ParseSource(loc string) (bucket, prefix string, err error) {
	bucket, prefix, _ = strings.Cut(strings.TrimPrefix(loc, "s3://"), "/")
	if !bucketName.MatchString(bucket) {
		return "", "", apiary.E(apiary.KindInvalid,
			"s3: source %q is not \"bucket/prefix\" with a valid bucket name (3 to 63 of a-z, 0-9, '.', '-')", loc)
	}
	return bucket, prefix, nil
}

// ItemID is the ID of the item of key in bucket: "s3://bucket/key".
func ItemID(bucket, key string) string { return "s3://" + bucket + "/" + key }

func parseItemID(id string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(id, "s3://")
	bucket, key, _ = strings.Cut(rest, "/")
	if !ok || !bucketName.MatchString(bucket) || key == "" {
		return "", "", apiary.E(apiary.KindInvalid, "s3: item id is not s3://bucket/key")
	}
	return bucket, key, nil
}

// cursor is a listing's state between List calls.
type cursor struct {
	Source uint64 `json:"s"`           // hash of the source location (and picks)
	Token  string `json:"t,omitempty"` // S3's continuation token
	Listed int    `json:"n,omitempty"` // items yielded so far
	Pick   int    `json:"p,omitempty"` // picked listing: the next pick's index
}

func (c cursor) encode() connectors.Cursor { return connectors.EncodeCursor(c) }

func decodeCursor(c connectors.Cursor, src connectors.Source) (cursor, error) {
	var st cursor
	decoded := connectors.DecodeCursor(c, &st)
	valid := st.Token != "" && st.Listed >= 0 && st.Pick == 0 // a bucket listing
	if len(src.Items) > 0 {
		valid = st.Token == "" && st.Pick > 0 && st.Pick < len(src.Items) // a picked listing
	}
	if !decoded || !valid || st.Source != src.Hash() {
		return cursor{}, apiary.E(apiary.KindInvalid, "s3: the cursor is not one of this source's")
	}
	return st, nil
}

// List returns the page of src's objects that starts at cur.
func (c *Connector) List(ctx context.Context, src connectors.Source, cur connectors.Cursor) (connectors.Page, error) {
	bucket, prefix, err := ParseSource(src.Location)
	if err != nil {
		return connectors.Page{}, err
	}
	limit := src.MaxItems
	if limit <= 0 {
		limit = connectors.DefaultMaxItems
	}
	limit = min(limit, connectors.HardMaxItems)
	st := cursor{Source: src.Hash()}
	if cur != "" {
		if st, err = decodeCursor(cur, src); err != nil {
			return connectors.Page{}, err
		}
	}
	if len(src.Items) > 0 {
		return c.listPicked(ctx, src, bucket, prefix, limit, st)
	}
	if st.Listed >= limit {
		return connectors.Page{}, nil
	}
	in := &s3.ListObjectsV2Input{
		Bucket:  aws.String(bucket),
		MaxKeys: aws.Int32(int32(min(c.cfg.PageSize, limit-st.Listed))),
	}
	if prefix != "" {
		in.Prefix = aws.String(prefix)
	}
	if st.Token != "" {
		in.ContinuationToken = aws.String(st.Token)
	}
	out, err := c.client.ListObjectsV2(ctx, in)
	if err != nil {
		return connectors.Page{}, c.Classify(ctx, err, "list bucket "+bucket)
	}
	var page connectors.Page
	for _, o := range out.Contents {
		key := aws.ToString(o.Key)
		if key == "" || strings.HasSuffix(key, "/") {
			continue // a folder marker
		}
		if st.Listed >= limit {
			break
		}
		st.Listed++
		page.Items = append(page.Items, connectors.Item{
			ID:       ItemID(bucket, key),
			Name:     path.Base(key),
			Size:     aws.ToInt64(o.Size),
			Version:  aws.ToString(o.ETag),
			Modified: aws.ToTime(o.LastModified),
		})
	}
	if aws.ToBool(out.IsTruncated) && aws.ToString(out.NextContinuationToken) != "" && st.Listed < limit {
		st.Token = aws.ToString(out.NextContinuationToken)
		page.Next = st.encode()
	}
	return page, nil
}

// headConcurrency bounds the HeadObject requests of one picked page.
const headConcurrency = 8

// listPicked returns the page of src's picked objects that starts at
// st.Pick: at most PageSize of them, in the order picked, each one's
// metadata asked with HeadObject.
func (c *Connector) listPicked(ctx context.Context, src connectors.Source, bucket, prefix string, limit int, st cursor) (connectors.Page, error) {
	keys, err := pickedKeys(src.Items, bucket, prefix, limit)
	if err != nil {
		return connectors.Page{}, err
	}
	end := min(st.Pick+c.cfg.PageSize, len(keys))
	page := connectors.Page{Items: make([]connectors.Item, end-st.Pick)}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(headConcurrency)
	for i, key := range keys[st.Pick:end] {
		g.Go(func() (err error) {
			page.Items[i], err = c.head(gctx, bucket, key)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return connectors.Page{}, err
	}
	if end < len(keys) {
		st.Pick = end
		page.Next = st.encode()
	}
	return page, nil
}

// pickedKeys reads the picked ids: each an id List yields
// ("s3://bucket/key", the full key) of src's bucket and under its prefix,
// not a folder marker, picked once; at most limit of them. Errors name the
// pick by its index, not by its key.
func pickedKeys(ids []string, bucket, prefix string, limit int) ([]string, error) {
	if len(ids) > limit {
		return nil, apiary.E(apiary.KindInvalid, "s3: %d items are picked, more than the listing's cap of %d", len(ids), limit)
	}
	keys := make([]string, len(ids))
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		b, key, err := parseItemID(id)
		switch {
		case err != nil:
			return nil, apiary.E(apiary.KindInvalid, "s3: the picked item at index %d is not an item id s3://bucket/key", i)
		case b != bucket || !strings.HasPrefix(key, prefix):
			return nil, apiary.E(apiary.KindInvalid, "s3: the picked item at index %d is outside the source's bucket and prefix", i)
		case strings.HasSuffix(key, "/"):
			return nil, apiary.E(apiary.KindInvalid, "s3: the picked item at index %d is a folder marker, not an object", i)
		case seen[key]:
			return nil, apiary.E(apiary.KindInvalid, "s3: the picked item at index %d is picked twice", i)
		}
		seen[key] = true
		keys[i] = key
	}
	return keys, nil
}

// head returns the item of key as HeadObject describes it. The error names
// no key: a gone pick fails the listing with ErrGone naming no id.
func (c *Connector) head(ctx context.Context, bucket, key string) (connectors.Item, error) {
	const what = "describe a picked object"
	out, err := c.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		// A HEAD answer has no body, so S3's error code is lost: a 400
		// or 403 may be a credential (ExpiredToken, InvalidAccessKeyId)
		// as well as a refusal, a 404 a key (gone) or a bucket (invalid).
		// A GET of the first byte reads the code, unless it works (or
		// the object is empty: 416) after all.
		if s := httpStatus(err); s == http.StatusBadRequest || s == http.StatusForbidden || s == http.StatusNotFound {
			got, gerr := c.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Range: aws.String("bytes=0-0")})
			if gerr == nil {
				got.Body.Close()
			} else if httpStatus(gerr) != http.StatusRequestedRangeNotSatisfiable {
				return connectors.Item{}, c.Classify(ctx, gerr, what)
			}
		}
		return connectors.Item{}, c.Classify(ctx, err, what)
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return connectors.Item{
		ID:          ItemID(bucket, key),
		Name:        path.Base(key),
		ContentType: aws.ToString(out.ContentType),
		Size:        size,
		Version:     aws.ToString(out.ETag),
		Modified:    aws.ToTime(out.LastModified),
	}, nil
}

// httpStatus is the HTTP status of an SDK error, 0 when it has none.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.HTTPStatusCode()
	}
	return 0
}

// Open streams item's object, refusing one over the size cap before
// reading it.
func (c *Connector) Open(ctx context.Context, item connectors.Item) (*connectors.Content, error) {
	bucket, key, err := parseItemID(item.ID)
	if err != nil {
		return nil, err
	}
	what := "object " + key
	if item.Size > c.cfg.MaxBytes {
		return nil, connectors.TooLarge("s3: "+what, c.cfg.MaxBytes)
	}
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if item.Seen != "" {
		in.IfNoneMatch = aws.String(item.Seen)
	}
	out, err := c.client.GetObject(ctx, in)
	if err != nil {
		return nil, c.Classify(ctx, err, "fetch "+what)
	}
	if n := aws.ToInt64(out.ContentLength); n > c.cfg.MaxBytes {
		out.Body.Close() // unread: the transport drops the connection
		return nil, connectors.TooLarge("s3: "+what, c.cfg.MaxBytes)
	}
	ctype := aws.ToString(out.ContentType)
	if ctype == "" {
		ctype = item.ContentType
	}
	version := aws.ToString(out.ETag)
	if version == "" {
		version = item.Version
	}
	return &connectors.Content{
		Body:        connectors.LimitBody(out.Body, c.cfg.MaxBytes, "s3: "+what),
		ContentType: ctype,
		Version:     version,
	}, nil
}

// Classify reads an S3 error (what names the request: "list bucket b"):
//   - 304 (a conditional fetch of an unchanged object): ErrNotModified;
//   - ExpiredToken, InvalidAccessKeyId, SignatureDoesNotMatch, InvalidToken,
//     TokenRefreshRequired, a 401: unauthenticated (the caller's temporary
//     credential expired or is wrong);
//   - AccessDenied, AllAccessDisabled, another 403: forbidden;
//   - NoSuchBucket, PermanentRedirect and AuthorizationHeaderMalformed (the
//     bucket is in another region): invalid, with what to fix;
//   - NoSuchKey, another 404, 410: gone;
//   - SlowDown, 429, a 503 with Retry-After: rate limited with S3's delay
//     (connectors.DefaultRetryAfter when it names none);
//   - other 5xx, timeouts, refused connections: unavailable (retried);
//   - other 4xx: invalid.
//
// The SDK's error is not kept: its text may quote the request.
func (c *Connector) Classify(ctx context.Context, err error, what string) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("s3: %s: %w", what, cerr)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return apiary.E(apiary.KindUnavailable, "s3: %s: timed out", what)
	}
	status := httpStatus(err)
	header := http.Header{}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		header = re.Response.Header
	}
	code := ""
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	switch code {
	case "NotModified":
		return connectors.ErrNotModified
	case "ExpiredToken", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "TokenRefreshRequired":
		return apiary.E(apiary.KindUnauthenticated, "s3: %s: S3 refused the credential (%s): it may have expired", what, code)
	case "AccessDenied", "AllAccessDisabled", "AccountProblem":
		return apiary.E(apiary.KindForbidden, "s3: %s: the credential may not read this (%s)", what, code)
	case "NoSuchBucket":
		return apiary.E(apiary.KindInvalid, "s3: %s: no such bucket (check its name, region and endpoint)", what)
	case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException":
		return apiary.E(apiary.KindInvalid, "s3: %s: the bucket is in another region than %s (%s)", what, c.cfg.Region, code)
	case "NoSuchKey":
		return connectors.Gone("s3: %s: no such key", what)
	case "SlowDown", "TooManyRequests", "Throttling", "ThrottlingException", "RequestLimitExceeded":
		return connectors.RetryAfter(connectors.ParseRetryAfter(header, c.cfg.Now()), "s3: %s: S3 asks to slow down (%s)", what, code)
	}
	switch {
	case status == 0:
		return apiary.E(apiary.KindUnavailable, "s3: %s: S3 is unreachable", what)
	case status == http.StatusNotModified:
		return connectors.ErrNotModified
	case status == http.StatusServiceUnavailable && connectors.ParseRetryAfter(header, c.cfg.Now()) > 0:
		return connectors.RetryAfter(connectors.ParseRetryAfter(header, c.cfg.Now()), "s3: %s: S3 is overloaded", what)
	case status >= 300 && status < 400:
		return apiary.E(apiary.KindInvalid, "s3: %s: S3 redirected (%d): check the region and endpoint", what, status)
	}
	return connectors.ClassifyStatus(&http.Response{StatusCode: status, Header: header}, "s3: "+what)
}
