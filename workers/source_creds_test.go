package workers_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/custody"
	"github.com/apiaryhq/apiary/workers"
)

// fakeCustody hands out a copy of creds, or err.
type fakeCustody struct {
	creds apiary.Credentials
	err   error
	asked atomic.Int32
}

func (f *fakeCustody) Withdraw(_ context.Context, _ apiary.Job) (apiary.Credentials, error) {
	f.asked.Add(1)
	if f.err != nil {
		return apiary.Credentials{}, f.err
	}
	return apiary.Credentials{
		AccessKeyID:     apiary.SecretFromBytes([]byte(string(f.creds.AccessKeyID.Reveal()))),
		SecretAccessKey: apiary.SecretFromBytes([]byte(string(f.creds.SecretAccessKey.Reveal()))),
	}, nil
}

// refusing is a connector whose source refuses the credential.
type refusing struct{}

func (refusing) List(context.Context, connectors.Source, connectors.Cursor) (connectors.Page, error) {
	return connectors.Page{}, apiary.E(apiary.KindUnauthenticated, "s3: list: S3 refused the credential (ExpiredToken): it may have expired")
}

func (refusing) Open(context.Context, connectors.Item) (*connectors.Content, error) {
	return nil, apiary.E(apiary.KindUnauthenticated, "refused")
}

var s3Spec = connectors.Spec{Provider: "s3", Bucket: "my-bucket", Prefix: "docs/"}

// A provider that needs a credential gets a copy from custody, which the
// handler wipes once the connector is open; a refused credential fails the
// job for good, as one gone from custody does.
func TestSourceHandlerEphemeralCredential(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	cust := &fakeCustody{creds: apiary.Credentials{
		AccessKeyID: apiary.NewSecret("AKIA-test"), SecretAccessKey: apiary.NewSecret("secret-canary"),
	}}
	var given apiary.Credentials
	var givenSecret string
	opener := func(_ context.Context, _ apiary.Job, spec connectors.Spec, creds apiary.Credentials) (connectors.Connector, connectors.Source, error) {
		given, givenSecret = creds, string(creds.SecretAccessKey.Reveal())
		return refusing{}, connectors.Source{Location: spec.SourceLocation()}, nil
	}
	h := workers.NewSourceHandler(workers.IngestConfig{}, e.jobs, e.stager, e.ingest, e.pipe, opener, cust)

	j := e.submit(t, s3Spec.Document())
	err := h.Handle(ctx, delivery(j, 1))
	require.Equal(t, int32(1), cust.asked.Load())
	require.Equal(t, "secret-canary", givenSecret, "the opener gets the withdrawn credential")
	require.True(t, given.SecretAccessKey.Empty() || allZero(given.SecretAccessKey.Reveal()), "the handler wipes its copy once the connector is open")
	require.True(t, apiary.IsPermanent(err), "an ephemeral credential refused is not retried: %v", err)
	require.Equal(t, workers.ReasonCredentialRefused, apiary.Message(err))
	require.NotContains(t, err.Error(), "secret-canary")

	// A credential gone from custody: permanent, with custody's reason.
	gone := &fakeCustody{err: custody.ErrTokenGone}
	h = workers.NewSourceHandler(workers.IngestConfig{}, e.jobs, e.stager, e.ingest, e.pipe, func(context.Context, apiary.Job, connectors.Spec, apiary.Credentials) (connectors.Connector, connectors.Source, error) {
		t.Fatal("no connector is opened without the credential")
		return nil, connectors.Source{}, nil
	}, gone)
	j = e.submit(t, s3Spec.Document())
	err = h.Handle(ctx, delivery(j, 1))
	require.True(t, apiary.IsPermanent(err), "%v", err)
	require.Equal(t, apiary.ReasonTokenGone, apiary.Message(err))

	// A web source asks custody nothing.
	web := &fakeCustody{err: custody.ErrTokenGone}
	h = workers.NewSourceHandler(workers.IngestConfig{}, e.jobs, e.stager, e.ingest, e.pipe, func(_ context.Context, _ apiary.Job, spec connectors.Spec, creds apiary.Credentials) (connectors.Connector, connectors.Source, error) {
		require.True(t, creds.Empty())
		return refusing{}, connectors.Source{Location: spec.URL}, nil
	}, web)
	j = e.submit(t, connectors.Spec{Provider: "web", URL: "https://example.com/"}.Document())
	err = h.Handle(ctx, delivery(j, 1))
	require.Zero(t, web.asked.Load())
	require.Equal(t, apiary.KindUnauthenticated, apiary.KindOf(err), "without an ephemeral credential, unauthenticated is left to the pool: %v", err)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
