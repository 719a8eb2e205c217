package s3_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/s3"
)

// TestClassify answers every request with one of S3's documented XML
// errors from a tiny fake and checks the kind List, Open and a picked
// listing (HeadObject, whose error has no body: net/http drops it, as S3
// sends none) report.
func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		status     int
		code       string
		retryAfter string
		want       apiary.Kind
		wantDelay  time.Duration
		gone       bool
		// pickWant, when set, is the picked listing's kind: a HEAD's 503
		// without its code or a delay is only unavailable.
		pickWant apiary.Kind
	}{
		{http.StatusBadRequest, "ExpiredToken", "", apiary.KindUnauthenticated, 0, false, 0},
		{http.StatusForbidden, "InvalidAccessKeyId", "", apiary.KindUnauthenticated, 0, false, 0},
		{http.StatusForbidden, "SignatureDoesNotMatch", "", apiary.KindUnauthenticated, 0, false, 0},
		{http.StatusForbidden, "AccessDenied", "", apiary.KindForbidden, 0, false, 0},
		{http.StatusNotFound, "NoSuchKey", "", apiary.KindNotFound, 0, true, 0},
		{http.StatusNotFound, "NoSuchBucket", "", apiary.KindInvalid, 0, false, 0},
		{http.StatusMovedPermanently, "PermanentRedirect", "", apiary.KindInvalid, 0, false, 0},
		{http.StatusServiceUnavailable, "SlowDown", "9", apiary.KindRateLimited, 9 * time.Second, false, 0},
		{http.StatusServiceUnavailable, "SlowDown", "", apiary.KindRateLimited, connectors.DefaultRetryAfter, false, apiary.KindUnavailable},
		{http.StatusTooManyRequests, "TooManyRequests", "", apiary.KindRateLimited, connectors.DefaultRetryAfter, false, 0},
		{http.StatusInternalServerError, "InternalError", "", apiary.KindUnavailable, 0, false, 0},
		{http.StatusBadRequest, "InvalidArgument", "", apiary.KindInvalid, 0, false, 0},
	} {
		t.Run(tt.code+tt.retryAfter, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := http.Header{}
				if tt.retryAfter != "" {
					h.Set("Retry-After", tt.retryAfter)
				}
				s3Error(w, tt.status, tt.code, "documented message", h)
			}))
			t.Cleanup(srv.Close)
			c, err := s3.New(s3.Config{Endpoint: srv.URL, UsePathStyle: true, AllowPrivate: true},
				s3.Credential{AccessKeyID: "ASIACANARYKEYID", SecretAccessKey: "canary-secret", SessionToken: "canary-session"})
			require.NoError(t, err)
			_, lerr := c.List(context.Background(), connectors.Source{Location: "bucket/docs/"}, "")
			_, oerr := c.Open(context.Background(), connectors.Item{ID: "s3://bucket/docs/a", Size: -1})
			_, perr := c.List(context.Background(), connectors.Source{Location: "bucket/docs/", Items: []string{"s3://bucket/docs/a"}}, "")
			for i, err := range []error{lerr, oerr, perr} {
				want := tt.want
				if i == 2 && tt.pickWant != 0 {
					want = tt.pickWant
				}
				require.Equal(t, want, apiary.KindOf(err), "%v", err)
				if i == 2 {
					require.NotContains(t, err.Error(), "docs/a", "a picked listing's error names no key")
				}
				if want == tt.want && tt.wantDelay > 0 {
					d, ok := apiary.RetryDelay(err)
					require.True(t, ok)
					require.Equal(t, tt.wantDelay, d)
				}
				if tt.want == apiary.KindNotFound {
					require.ErrorIs(t, err, connectors.ErrGone)
				}
				for _, secret := range []string{"canary-secret", "canary-session", "ASIACANARYKEYID"} {
					require.NotContains(t, err.Error(), secret)
				}
			}
		})
	}
}

func TestNotModified(t *testing.T) {
	t.Parallel()
	var gotINM string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotINM = r.Header.Get("If-None-Match")
		w.WriteHeader(http.StatusNotModified)
	}))
	t.Cleanup(srv.Close)
	c, err := s3.New(s3.Config{Endpoint: srv.URL, UsePathStyle: true, AllowPrivate: true},
		s3.Credential{AccessKeyID: "a", SecretAccessKey: "b"})
	require.NoError(t, err)
	_, err = c.Open(context.Background(), connectors.Item{ID: "s3://bucket/k", Size: -1, Seen: `"abc"`})
	require.ErrorIs(t, err, connectors.ErrNotModified)
	require.Equal(t, `"abc"`, gotINM)
}

func TestCredentialRedacts(t *testing.T) {
	t.Parallel()
	cred := s3.Credential{AccessKeyID: "ASIACANARYKEYID", SecretAccessKey: "canary-secret", SessionToken: "canary-session"}
	var out strings.Builder
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		fmt.Fprintf(&out, f+"\n", cred)
	}
	fmt.Fprintf(&out, "%v\n", struct{ C s3.Credential }{cred})
	b, err := json.Marshal(map[string]any{"c": cred})
	require.NoError(t, err)
	out.Write(b)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "cred", cred)
	for _, secret := range []string{"canary-secret", "canary-session", "ASIACANARYKEYID"} {
		require.NotContains(t, out.String(), secret)
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	_, err := s3.New(s3.Config{}, s3.Credential{AccessKeyID: "a"})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a credential without its secret")
	_, err = s3.New(s3.Config{Endpoint: "http://169.254.169.254/"}, s3.Credential{AccessKeyID: "a", SecretAccessKey: "b"})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "the metadata service as an endpoint")
	_, err = s3.NewWithRole(s3.Config{}, aws.Config{}, s3.Role{ARN: "arn:aws:s3:::bucket", ExternalID: "x42"})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "not a role ARN")
	_, err = s3.NewWithRole(s3.Config{}, aws.Config{}, s3.Role{ARN: "arn:aws:iam::123456789012:role/r"})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a role without an external id")
	_, _, err = s3.ParseSource("Not_A_Bucket/x")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}
