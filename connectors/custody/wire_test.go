package custody

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

func TestCredentialsEncodingRoundTrips(t *testing.T) {
	t.Parallel()
	for _, c := range []apiary.Credentials{
		{Token: apiary.NewSecret("tok")},
		{AccessKeyID: apiary.NewSecret("AKIA"), SecretAccessKey: apiary.NewSecret("s"), SessionToken: apiary.NewSecret("st"), Expiry: time.Unix(1700000000, 5)},
	} {
		b := encodeCredentials(c)
		got, err := decodeCredentials(b)
		require.NoError(t, err)
		require.Equal(t, encodeCredentials(c), encodeCredentials(got))
		require.True(t, c.Expiry.Equal(got.Expiry))
	}
}

func FuzzDecodeCredentials(f *testing.F) {
	f.Add(encodeCredentials(apiary.Credentials{Token: apiary.NewSecret("tok")}))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCredentials(b)
		if err != nil {
			return
		}
		again, err := decodeCredentials(encodeCredentials(c))
		require.NoError(t, err, "what decodes encodes to something that decodes")
		require.Equal(t, encodeCredentials(c), encodeCredentials(again))
	})
}
