package workers_test

import (
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers"
)

// memSource is an in-memory source: items by id with their content, a
// version that changes with it, and a count of fetches per item.
type memSource struct {
	mu       sync.Mutex
	items    map[string]string
	version  map[string]int
	opened   map[string]int
	hidden   map[string]bool // not listed, yet still there (a cursor that skipped it)
	log      []string        // ids changed or removed, in order: the change feed
	listings int
}

// feedSource is a memSource with a change feed over its log.
type feedSource struct{ *memSource }

func (f feedSource) StartToken(context.Context, connectors.Source) (connectors.Cursor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return connectors.Cursor(strconv.Itoa(len(f.log))), nil
}

func (f feedSource) Changes(_ context.Context, _ connectors.Source, token connectors.Cursor) (connectors.Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := strconv.Atoi(string(token))
	if err != nil || n > len(f.log) {
		return connectors.Changes{}, apiary.E(apiary.KindInvalid, "a token this feed never gave")
	}
	var ch connectors.Changes
	for _, id := range f.log[n:] {
		if _, ok := f.items[id]; ok {
			ch.Items = append(ch.Items, connectors.Item{ID: id, Name: id + ".txt", Size: -1, Version: strings.Repeat("v", f.version[id])})
		} else {
			ch.Removed = append(ch.Removed, id)
		}
	}
	ch.Token = connectors.Cursor(strconv.Itoa(len(f.log)))
	return ch, nil
}

func newMemSource(items map[string]string) *memSource {
	m := &memSource{items: map[string]string{}, version: map[string]int{}, opened: map[string]int{}, hidden: map[string]bool{}}
	for id, text := range items {
		m.put(id, text)
	}
	return m
}

func (m *memSource) put(id, text string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.items[id] = text
	m.version[id]++
	m.log = append(m.log, id)
}

func (m *memSource) remove(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.items, id)
	m.log = append(m.log, id)
}

func (m *memSource) fetches(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.opened[id]
}

func (m *memSource) List(_ context.Context, _ connectors.Source, cursor connectors.Cursor) (connectors.Page, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cursor == "" {
		m.listings++
	}
	var ids []string
	for id := range m.items {
		if id > string(cursor) && !m.hidden[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var p connectors.Page
	for _, id := range ids {
		if len(p.Items) == 2 {
			p.Next = connectors.Cursor(p.Items[1].ID)
			break
		}
		p.Items = append(p.Items, connectors.Item{ID: id, Name: id + ".txt", Size: -1, Version: strings.Repeat("v", m.version[id])})
	}
	return p, nil
}

func (m *memSource) Open(_ context.Context, it connectors.Item) (*connectors.Content, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	text, ok := m.items[it.ID]
	if !ok {
		return nil, connectors.Gone("gone")
	}
	m.opened[it.ID]++
	return &connectors.Content{Body: io.NopCloser(strings.NewReader(text)), ContentType: "text/plain"}, nil
}

// A sync fetches only what changed since its source's documents were
// ingested and deletes those gone from the source; another source's
// documents, and a plain ingest's, are left alone.
func TestSourceSync(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	src := newMemSource(map[string]string{
		"hives": "Honeybees store nectar as honey.", "queen": "The queen lays eggs.", "wax": "Workers make wax.",
	})
	other := newMemSource(map[string]string{"drones": "Drones do not sting."})
	h := workers.NewSourceHandler(workers.IngestConfig{}, e.jobs, e.stager, e.ingest, e.pipe,
		func(_ context.Context, _ apiary.Job, spec connectors.Spec, _ apiary.Credentials) (connectors.Connector, connectors.Source, error) {
			if spec.Location == "other" {
				return other, connectors.Source{}, nil
			}
			return src, connectors.Source{}, nil
		}, nil)
	spec := connectors.Spec{Provider: "notion", Connection: "con_1", Location: "all"}
	run := func(s connectors.Spec) apiary.Job {
		t.Helper()
		j := e.submit(t, s.Document())
		require.NoError(t, h.Handle(ctx, delivery(j, 1)))
		got := e.job(t, j.ID)
		require.Equal(t, apiary.JobSucceeded, got.Status, "%+v", got)
		return got
	}

	first := run(spec) // a plain ingest of the connection's source
	require.Equal(t, 3, first.Counts.DocumentsDone)
	run(connectors.Spec{Provider: "notion", Connection: "con_1", Location: "other"})

	src.put("queen", "The queen lays up to two thousand eggs a day.")
	src.put("royal", "Royal jelly feeds larvae.")
	src.remove("wax")
	sync := spec
	sync.Sync = true
	got := run(sync)
	require.Equal(t, 3, got.Counts.DocumentsTotal, "what the source lists now")
	require.Equal(t, 3, got.Counts.DocumentsDone)
	require.Equal(t, 1, got.Counts.DocumentsUnchanged)
	require.Equal(t, 1, got.Counts.DocumentsRemoved)
	require.Equal(t, 1, src.fetches("hives"), "an unchanged item is not fetched again")
	require.Equal(t, 2, src.fetches("queen"), "a changed item is")
	require.Equal(t, 1, src.fetches("royal"))

	_, err := e.recs.Document(ctx, "acme", "wax")
	require.ErrorIs(t, err, apiary.ErrNotFound, "a document gone from the source is deleted")
	for _, id := range []apiary.DocumentID{"hives", "queen", "royal", "drones"} {
		rec, err := e.recs.Document(ctx, "acme", id)
		require.NoError(t, err, "%s stays", id)
		require.NotEmpty(t, rec.Origin.Source)
		require.NotContains(t, rec.Origin.Source+rec.Origin.Version, "con_1", "origins are fingerprints")
	}

	// An item the listing skipped but the source still has stays.
	src.mu.Lock()
	src.hidden["royal"] = true
	src.mu.Unlock()
	skipped := run(sync)
	require.Zero(t, skipped.Counts.DocumentsRemoved, "a document is removed only once the source says it is gone")
	_, err = e.recs.Document(ctx, "acme", "royal")
	require.NoError(t, err)
	src.mu.Lock()
	delete(src.hidden, "royal")
	src.mu.Unlock()

	// Nothing changed: nothing fetched, nothing removed.
	again := run(sync)
	require.Equal(t, 3, again.Counts.DocumentsUnchanged)
	require.Zero(t, again.Counts.DocumentsRemoved)
	require.Equal(t, 1, src.fetches("hives"))
	require.Equal(t, 1, other.fetches("drones"), "another source is not synced")
}

// A sync of a source with a change feed lists it whole once, keeping the
// feed's token of before that listing (sealed in the connection); later
// syncs read only the feed from it. A token the vendor no longer honours
// falls back to a full listing; a disconnect drops the tokens.
func TestSourceSyncFromTheChangeFeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	conns, err := connections.New(connections.Config{}, e.recs, e.keys, nil)
	require.NoError(t, err)
	now := time.Now().UTC()
	require.NoError(t, e.recs.CreateConnection(ctx, records.Connection{ID: "con_feed", Account: "acme", Provider: "notion",
		Status: records.ConnectionActive, CreatedAt: now, UpdatedAt: now}))
	src := newMemSource(map[string]string{"hives": "Honeybees store nectar.", "queen": "The queen lays eggs.", "wax": "Workers make wax."})
	h := workers.NewSourceHandler(workers.IngestConfig{}, e.jobs, e.stager, e.ingest, e.pipe,
		func(context.Context, apiary.Job, connectors.Spec, apiary.Credentials) (connectors.Connector, connectors.Source, error) {
			return feedSource{src}, connectors.Source{}, nil
		}, nil).WithCursors(conns)
	spec := connectors.Spec{Provider: "notion", Connection: "con_feed", Sync: true}
	run := func() apiary.Job {
		t.Helper()
		j := e.submit(t, spec.Document())
		require.NoError(t, h.Handle(ctx, delivery(j, 1)))
		got := e.job(t, j.ID)
		require.Equal(t, apiary.JobSucceeded, got.Status, "%+v", got)
		return got
	}

	first := run()
	require.Equal(t, 3, first.Counts.DocumentsDone)
	require.Equal(t, 1, src.listings, "the first sync lists the source")
	c, err := e.recs.Connection(ctx, "acme", "con_feed")
	require.NoError(t, err)
	require.Len(t, c.SyncCursors, 1, "the feed's token is kept")
	for _, sealed := range c.SyncCursors {
		// The token is "3": a search for that one byte in random ciphertext
		// would find it in about a third of runs.
		require.NotEqual(t, "3", string(sealed), "sealed, not the token itself")
		require.Greater(t, len(sealed), 28, "an envelope: wrapped key, nonce and tag around the token")
	}

	src.put("queen", "The queen lays two thousand eggs a day.")
	src.remove("wax")
	second := run()
	require.Equal(t, 1, src.listings, "a later sync reads the feed only")
	require.Equal(t, 1, second.Counts.DocumentsTotal, "what changed")
	require.Equal(t, 1, second.Counts.DocumentsRemoved)
	require.Equal(t, 2, src.fetches("queen"))
	require.Equal(t, 1, src.fetches("hives"))
	_, err = e.recs.Document(ctx, "acme", "wax")
	require.ErrorIs(t, err, apiary.ErrNotFound)

	// A token the vendor forgot: the sync lists whole again.
	src.mu.Lock()
	src.log = nil
	src.mu.Unlock()
	src.put("royal", "Royal jelly feeds larvae.")
	third := run()
	require.Equal(t, 2, src.listings)
	require.Equal(t, 3, third.Counts.DocumentsTotal)
	require.Equal(t, 2, third.Counts.DocumentsUnchanged)

	_, err = conns.Disconnect(ctx, "acme", "con_feed")
	require.NoError(t, err)
	c, err = e.recs.Connection(ctx, "acme", "con_feed")
	require.NoError(t, err)
	require.Empty(t, c.SyncCursors, "a disconnect drops the tokens")
}
