package connectors_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
)

// An s3 spec survives its staging whole, needs a credential, and is
// validated field by field; a web spec stages as it did.
func TestSpecS3(t *testing.T) {
	t.Parallel()
	s := connectors.Spec{Provider: "s3", Bucket: "my-bucket", Prefix: "docs/", Region: "eu-west-1", Endpoint: "http://127.0.0.1:9000"}
	require.NoError(t, s.Validate(true))
	require.True(t, s.NeedsCredential())
	require.Equal(t, "my-bucket/docs/", s.SourceLocation())
	got, err := connectors.SpecFrom([]apiary.Document{s.Document()})
	require.NoError(t, err)
	require.Equal(t, s, got)

	w := connectors.Spec{Provider: "web", URL: "https://example.com/", MaxItems: 3}
	require.False(t, w.NeedsCredential())
	require.NotContains(t, w.Document().Metadata, "bucket")
	got, err = connectors.SpecFrom([]apiary.Document{w.Document()})
	require.NoError(t, err)
	require.Equal(t, w, got)

	for name, bad := range map[string]connectors.Spec{
		"no bucket":         {Provider: "s3"},
		"a bad bucket":      {Provider: "s3", Bucket: "Bad_Bucket"},
		"a bad region":      {Provider: "s3", Bucket: "my-bucket", Region: "../x"},
		"a loopback host":   {Provider: "s3", Bucket: "my-bucket", Endpoint: "http://127.0.0.1:9000"},
		"a url":             {Provider: "s3", Bucket: "my-bucket", URL: "https://example.com/"},
		"max items":         {Provider: "s3", Bucket: "my-bucket", MaxItems: 3},
		"web with a bucket": {Provider: "web", URL: "https://example.com/", Bucket: "my-bucket"},
	} {
		require.ErrorIs(t, bad.Validate(false), apiary.ErrInvalid, name)
	}
}
