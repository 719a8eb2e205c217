package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConfigFromEnvironment: every flag takes its APIARY_* variable, and a
// value that does not parse is reported by Validate, naming the variable.
func TestConfigFromEnvironment(t *testing.T) {
	t.Setenv("APIARY_WORKERS", "7")
	t.Setenv("APIARY_LEASE", "90s")
	t.Setenv("APIARY_RATE_LIMIT", "12.5")
	t.Setenv("APIARY_ALLOW_PRIVATE_WEBHOOKS", "true")
	t.Setenv("APIARY_QUEUE", "sqs")
	badEnv = nil
	var cfg Config
	require.NoError(t, flagSet("serve", &cfg).Parse(nil))
	require.Equal(t, 7, cfg.Workers)
	require.Equal(t, 90*time.Second, cfg.Lease)
	require.InDelta(t, 12.5, cfg.RateLimit, 1e-9)
	require.True(t, cfg.AllowPrivateWebhooks)
	require.Equal(t, "sqs", cfg.Queue)
	require.NoError(t, cfg.Validate("serve"))

	t.Setenv("APIARY_MAX_ATTEMPTS", "many")
	t.Setenv("APIARY_SHUTDOWN_TIMEOUT", "soon")
	badEnv = nil
	cfg = Config{}
	require.NoError(t, flagSet("serve", &cfg).Parse(nil))
	err := cfg.Validate("serve")
	require.Error(t, err)
	require.Contains(t, err.Error(), `APIARY_MAX_ATTEMPTS="many" is not a whole number`)
	require.Contains(t, err.Error(), `APIARY_SHUTDOWN_TIMEOUT="soon" is not a duration`)

	// api and worker processes share NATS and vectors with others.
	badEnv = nil
	cfg = Config{}
	require.NoError(t, flagSet("api", &cfg).Parse(nil))
	err = cfg.Validate("api")
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "--nats-url") && strings.Contains(err.Error(), "--vectors milvus"), err.Error())
}

// The body limit stays under what the staging store holds, so that every
// request the limit lets in can be staged.
func TestBodyLimitFitsTheStagingStore(t *testing.T) {
	for value, ok := range map[string]bool{"63": true, "64": false, "0": false} {
		t.Setenv("APIARY_BODY_LIMIT_MIB", value)
		badEnv = nil
		var cfg Config
		require.NoError(t, flagSet("serve", &cfg).Parse(nil))
		err := cfg.Validate("serve")
		if ok {
			require.NoError(t, err, value)
			continue
		}
		require.ErrorContains(t, err, "--body-limit-mib must be 1 to 63", value)
	}
}
