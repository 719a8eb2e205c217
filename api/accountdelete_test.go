package api

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/pipeline/lexical"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/events"
)

func TestDeleteAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	doc := apiary.Document{ID: "hive", Title: "Hive", Text: "Honey bees store nectar as honey in hexagonal wax cells."}
	e.seed(apiary.DefaultAccount, doc)
	b, bToken := e.otherAccount("Beta")
	e.seed(b, doc)
	queued := e.ingest(bToken, map[string]any{"id": "later", "text": "Queued and never run."})
	query := func(account apiary.AccountID) []pipeline.Result {
		res, err := e.pipe.Search(ctx, account, pipeline.Query{Text: "hexagonal wax cells", TopK: 5})
		require.NoError(t, err)
		return res
	}
	require.NotEmpty(t, query(b))

	requireProblem(t, e.do(http.MethodDelete, "/v1/accounts/"+string(b), bToken), 403, "operator")
	requireProblem(t, e.do(http.MethodDelete, "/v1/accounts/"+string(apiary.NewAccountID()), e.operator), 404, "no such account")
	requireProblem(t, e.do(http.MethodDelete, "/v1/accounts/"+string(apiary.DefaultAccount), e.operator), 409, "operator token")
	requireProblem(t, e.do(http.MethodDelete, "/v1/account", e.admin, jsonBody(map[string]string{"confirm": string(apiary.DefaultAccount)})), 409, "operator token")
	requireProblem(t, e.do(http.MethodDelete, "/v1/account", bToken, jsonBody(map[string]string{"confirm": "someone-else"})), 400, "confirm must be this account's id")
	requireProblem(t, e.do(http.MethodDelete, "/v1/account", bToken, jsonBody(map[string]string{})), 400, "confirm must be this account's id")

	rec := e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())

	requireProblem(t, e.do(http.MethodGet, "/v1/account", bToken), 401, "")
	_, err := e.keys.GenerateDataKey(ctx, b, encrypt.Context{"document": "x"})
	require.ErrorIs(t, err, apiary.ErrNotFound, "the account's key is erased")
	_, err = e.recs.Document(ctx, b, "hive")
	require.ErrorIs(t, err, apiary.ErrNotFound)
	_, err = e.recs.Job(ctx, b, queued)
	require.ErrorIs(t, err, apiary.ErrNotFound)
	_, err = e.recs.Account(ctx, b)
	require.ErrorIs(t, err, apiary.ErrNotFound)
	probe := make([]float32, e.pipe.Model().Dim)
	probe[0] = 1
	hits, err := e.vecs.Search(ctx, b, probe, 5, storage.VectorFilter{})
	require.NoError(t, err)
	require.Empty(t, hits, "the account's vectors are deleted")
	_, err = e.pipe.Search(ctx, b, pipeline.Query{Text: "hexagonal wax cells", TopK: 5})
	require.ErrorIs(t, err, apiary.ErrNotFound, "nothing of the account is searchable: its keys are gone")
	require.NotEmpty(t, query(apiary.DefaultAccount), "another account keeps its own")
	requireProblem(t, e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator), 404, "no such account")

	// An admin deletes their own account, naming it.
	c, cToken := e.otherAccount("Gamma")
	rec = e.do(http.MethodDelete, "/v1/account", cToken, jsonBody(map[string]string{"confirm": string(c)}))
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	requireProblem(t, e.do(http.MethodGet, "/v1/account", cToken), 401, "")
	_, err = e.recs.Account(ctx, c)
	require.ErrorIs(t, err, apiary.ErrNotFound)
}

// A deletion cut short right after the account's key was erased (a crash)
// is finished by asking again, also after a restart, when no key of the
// account is left in memory to open its sealed names with.
func TestDeleteAccountCutShortAfterErase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	b, bToken := e.otherAccount("Beta")
	e.seed(b, apiary.Document{ID: "hive", Title: "Hive", Text: "Honey bees store nectar in wax cells."})
	rec := e.do(http.MethodPost, "/v1/ingest", bToken, jsonBody(map[string]any{
		"documents": []map[string]any{{"id": "later", "text": "Queued."}}, "webhook_url": "https://hooks.example.com/done"}))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	queued := decode[ingestResponse](t, rec).JobID
	_, err := e.srv.jobs.Cancel(ctx, b, queued) // the first try canceled it, then erased the key
	require.NoError(t, err)
	require.NoError(t, e.keys.EraseAccountKey(ctx, b))
	// The restart: the field keys cached by the first try are gone.
	e.recs.SealFields(lexical.NewKeys(e.keys, e.recs, lexical.KeysConfig{}).Derived("record fields"))

	rec = e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	requireProblem(t, e.do(http.MethodGet, "/v1/account", bToken), 401, "")
	_, err = e.recs.TokenByHash(ctx, HashToken(bToken))
	require.ErrorIs(t, err, apiary.ErrNotFound, "the account's tokens are deleted")
	_, err = e.recs.Account(ctx, b)
	require.ErrorIs(t, err, apiary.ErrNotFound)
	requireProblem(t, e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator), 404, "no such account")
}

// A deletion cut short after its announcement (its vectors or records
// not deleted: Milvus down) while a job of the account was queued after
// the first try canceled the others (a request already past
// authentication): asking again finishes it, although every write of the
// account is refused from the announcement on.
func TestDeleteAccountCutShortAfterAnnounce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	b, bToken := e.otherAccount("Beta")
	rec := e.do(http.MethodPost, "/v1/ingest", bToken, jsonBody(map[string]any{
		"documents": []map[string]any{{"id": "late", "text": "Queued after the first try canceled the jobs."}}}))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	// The first try: tokens, jobs (not the one above, queued since),
	// connections, key erased, then the announcement, and no further.
	require.NoError(t, e.recs.DeleteAccountTokens(ctx, b))
	require.NoError(t, e.keys.EraseAccountKey(ctx, b))
	e.recs.Forget(b)

	rec = e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	left, _, err := e.recs.AccountLeft(ctx, b)
	require.NoError(t, err)
	require.False(t, left, "the account's records are deleted")
}

// An admin deleting their own account leaves the deletion on record where
// someone can still read it: the operator's audit log, naming the account.
// (The account's own log has no reader left.)
func TestDeleteOwnAccountIsAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, cToken := e.otherAccount("Gamma")
	rec := e.do(http.MethodDelete, "/v1/account", cToken, jsonBody(map[string]string{"confirm": string(c)}))
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())

	rec = e.do(http.MethodGet, "/v1/audit", e.operator)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var found []records.AuditEntry
	for _, en := range decode[auditList](t, rec).Entries {
		if en.Action == "account.delete" {
			found = append(found, en)
		}
	}
	require.Len(t, found, 1, rec.Body.String())
	require.Equal(t, string(c), found[0].Target)
	require.Equal(t, "success", found[0].Result)
	require.NotEmpty(t, found[0].Actor, "the deleting admin's token")
}

// Once an account is deleted, no key of it is left in this process: a
// request racing the deletion (here, minting a token, whose name is sealed)
// cannot write the account's records under a key still cached.
func TestDeleteAccountForgetsItsDerivedKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b, _ := e.otherAccount("Beta")
	rec := e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())

	_, secret, err := issueToken(t.Context(), e.recs, b, "late", apiary.RoleAdmin, false, nil)
	if err == nil {
		requireProblem(t, e.do(http.MethodGet, "/v1/account", secret), 401, "")
	}
	require.Error(t, err, "a token of the deleted account was minted, sealed under its erased key")
}

// failingEraser is the keyring, but its first erasure fails (KMS down).
type failingEraser struct {
	*keyring.Keyring
	failed atomic.Bool
}

func (f *failingEraser) EraseAccountKey(ctx context.Context, account apiary.AccountID) error {
	if f.failed.CompareAndSwap(false, true) {
		return apiary.E(apiary.KindUnavailable, "the key service is down")
	}
	return f.Keyring.EraseAccountKey(ctx, account)
}

// The account's tokens go first: a deletion that fails midway (here, at
// its key) has already stopped every token of the account, and asking
// again finishes it.
func TestDeleteAccountStopsItsTokensFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *Config, d *Deps) { d.Keys = &failingEraser{Keyring: d.Keys.(*keyring.Keyring)} })
	b, bToken := e.otherAccount("Beta")
	rec := e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	requireProblem(t, e.do(http.MethodGet, "/v1/account", bToken), http.StatusUnauthorized, "")

	rec = e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	requireProblem(t, e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator), http.StatusNotFound, "no such account")
}

// deletionsSpy records the accounts announced deleted, and whether each
// one's key was already erased then; its first announcement fails when
// failFirst is set (NATS unreachable).
type deletionsSpy struct {
	keys      encrypt.KeyProvider
	failFirst bool
	calls     int
	erased    map[apiary.AccountID]bool
}

func (d *deletionsSpy) AnnounceDeleted(ctx context.Context, account apiary.AccountID) error {
	d.calls++
	if d.failFirst && d.calls == 1 {
		return apiary.E(apiary.KindUnavailable, "test: the bus is down")
	}
	_, err := d.keys.GenerateDataKey(ctx, account, encrypt.Context{"document": "x"})
	d.erased[account] = errors.Is(err, apiary.ErrNotFound)
	return nil
}

func (d *deletionsSpy) OnDeleted(func(apiary.AccountID)) (func() error, error) {
	return func() error { return nil }, nil
}

// Deleting an account tells every process to forget it (Deps.Deletions),
// once its key is erased; a deletion whose announcement fails is not done,
// and asking again finishes it and announces it.
func TestDeleteAccountIsAnnounced(t *testing.T) {
	t.Parallel()
	spy := &deletionsSpy{failFirst: true, erased: map[apiary.AccountID]bool{}}
	e := newEnv(t, func(_ *Config, d *Deps) { spy.keys = d.Keys; d.Deletions = spy })
	b, _ := e.otherAccount("Beta")
	requireProblem(t, e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator), 503, "")
	require.Empty(t, spy.erased)
	rec := e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	require.Equal(t, map[apiary.AccountID]bool{b: true}, spy.erased, "announced once its key is erased")
}

// The bus carries the announcement to the processes listening.
func TestDeleteAccountReachesListeners(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	told := make(chan apiary.AccountID, 1)
	stop, err := e.bus.(events.Deletions).OnDeleted(func(acc apiary.AccountID) { told <- acc })
	require.NoError(t, err)
	t.Cleanup(func() { _ = stop() })
	b, _ := e.otherAccount("Beta")
	rec := e.do(http.MethodDelete, "/v1/accounts/"+string(b), e.operator)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	select {
	case acc := <-told:
		require.Equal(t, b, acc)
	case <-time.After(30 * time.Second):
		t.Fatal("the deletion was not announced on the bus")
	}
}
