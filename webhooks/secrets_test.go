package webhooks_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/webhooks"
)

func TestNewSecretFormat(t *testing.T) {
	t.Parallel()
	s, err := webhooks.NewSecret()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(s, "whsec_"))
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
	require.NoError(t, err)
	require.Len(t, key, 32)
	s2, err := webhooks.NewSecret()
	require.NoError(t, err)
	require.NotEqual(t, s, s2)
	_, err = webhooks.ParseSecret("whsec_not base64!")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "not base64")
}
