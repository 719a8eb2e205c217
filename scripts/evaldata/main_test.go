package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/internal/eval"
)

// A Go distribution of one package, and packages that must be left out.
var fakeGoroot = map[string]string{
	"src/hive/hive.go": `// Package hive keeps bees. It is a package with more to say than that.
package hive

// Comb holds honey in hexagonal cells. Cells are made of wax; each holds
// one larva or a store of honey.
type Comb struct{ cells int }

// Fill fills the comb with honey, a cell at a time. It returns the number
// of cells filled, at most n of them in all.
func (c *Comb) Fill(n int) int { return 0 }

// A Bee gathers nectar from many flowers. Workers fly up to three
// kilometres from the hive to forage for nectar and pollen.
type Bee int

// Old fills a comb the old way. It is slower than Fill in every case we know.
//
// Deprecated: use Comb.Fill.
func Old() {}

// Short has one sentence only.
func Short() {}

// List returns the cells of the comb in a list, one of
//
//   - the full ones, and the empty ones, all of them in one order or another.
func List() {}

func undocumented() {}
`,
	"src/hive/hive_linux_test.go":   "package hive\n\n// Test is not read. It is in a test file of the package under test.\nfunc Test() {}\n",
	"src/hive/hive_windows.go":      "package hive\n\n// Windows is not read. It is built for windows only, and the set for linux.\nfunc Windows() {}\n",
	"src/internal/secret/s.go":      "// Package secret is internal. It is never documented for users of the library.\npackage secret\n",
	"src/cmd/tool/main.go":          "// Tool is a command. It is left out of the set like every other command.\npackage main\n",
	"src/vendor/example.com/v/v.go": "// Package v is vendored but not from golang.org/x. It is left out like the rest.\npackage v\n",
	"src/vendor/golang.org/x/net/idna/idna.go": `// Package idna converts internationalized domain names. It implements IDNA2008 with more words here.
package idna
`,
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	return root
}

func TestBuildsKnownItemSet(t *testing.T) {
	t.Parallel()
	root := writeTree(t, fakeGoroot)
	var entries []entry
	for _, tree := range []string{"src", "src/vendor"} {
		es, err := collect(root, filepath.Join(root, tree))
		require.NoError(t, err)
		entries = append(entries, es...)
	}
	s := buildSet(entries, 10, 5)

	var ids []string
	for _, d := range s.docs {
		ids = append(ids, d.ID)
	}
	// Short has no text after its summary; Old is deprecated; tests, other
	// platforms, internal packages, commands and vendored packages but
	// golang.org/x ones are not read.
	require.Equal(t, []string{"golang.org/x/net/idna", "hive", "hive.Bee", "hive.Comb", "hive.Comb.Fill", "hive.List"}, ids)
	require.Equal(t, eval.Doc{ID: "hive.Comb.Fill", Title: "hive.Comb.Fill",
		Text: "func (c *Comb) Fill(n int) int\n\nIt returns the number of cells filled, at most n of them in all."}, s.docs[4])
	require.Equal(t, "type Comb struct\n\nCells are made of wax; each holds one larva or a store of honey.", s.docs[3].Text)

	// Queries lose the name they start with; "keeps bees" is too short;
	// List's summary stops at a paragraph break, not a period: cut short.
	require.Equal(t, []eval.Query{
		{ID: "golang.org/x/net/idna", Text: "converts internationalized domain names"},
		{ID: "hive.Bee", Text: "gathers nectar from many flowers"},
		{ID: "hive.Comb", Text: "holds honey in hexagonal cells"},
		{ID: "hive.Comb.Fill", Text: "fills the comb with honey, a cell at a time"},
	}, s.queries)

	out := t.TempDir()
	require.NoError(t, s.write(out))
	f, err := os.Open(filepath.Join(out, "qrels", "test.tsv"))
	require.NoError(t, err)
	defer f.Close()
	qrels, err := eval.ReadQrels(f)
	require.NoError(t, err)
	require.Equal(t, eval.Qrels{"golang.org/x/net/idna": {"golang.org/x/net/idna": 1}, "hive.Bee": {"hive.Bee": 1},
		"hive.Comb": {"hive.Comb": 1}, "hive.Comb.Fill": {"hive.Comb.Fill": 1}}, qrels)
}

func TestBuildSetDropsAmbiguity(t *testing.T) {
	t.Parallel()
	body := "one two three four five six seven eight"
	entries := []entry{
		{id: "a.Read", name: "Read", summary: "Read reads data into p.", body: body + " a"},
		{id: "b.Read", name: "Read", summary: "Read reads data into p.", body: body + " b"}, // the same query
		{id: "c.Write", name: "Write", summary: "Write writes len(p) bytes.", body: body},
		{id: "d.Write", name: "Write", summary: "Write writes p to the stream.", body: body}, // the same text
		{id: "e.Copy", name: "Copy", summary: "Copy copies from src to dst.", body: "too short"},
	}
	s := buildSet(entries, 10, 8)
	var ids []string
	for _, d := range s.docs {
		ids = append(ids, d.ID)
	}
	require.Equal(t, []string{"a.Read", "b.Read"}, ids, "texts two entries share are left out, and short ones")
	require.Empty(t, s.queries, "a summary two entries share names neither")

	many := make([]entry, 50)
	for i := range many {
		w := strings.Repeat("x", i+1)
		many[i] = entry{id: "p.F" + w, name: "F" + w, summary: "F" + w + " does " + w + " for you.", body: body + " " + w}
	}
	first := buildSet(many, 7, 8)
	require.Len(t, first.queries, 7)
	require.Len(t, first.docs, 50, "every document stays; queries are sampled")
	require.Equal(t, first.queries, buildSet(many, 7, 8).queries, "the sample is fixed")
}
