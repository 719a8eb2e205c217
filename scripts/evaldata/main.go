// Command evaldata builds Apiary's evaluation set, godoc: a known-item
// retrieval set in BEIR format from the documentation of the Go standard
// library (BSD-3-Clause, © The Go Authors).
//
//	go run ./scripts/evaldata -out .eval/godoc      (make eval-data)
//
// Each exported function, method, type and package with a doc comment of
// at least two sentences is one document: its qualified name as title, its
// declaration, and its doc comment without the first sentence. The first
// sentence, the one-line summary a Go author writes to begin every doc
// comment ("ReadFile reads the named file and returns the contents."),
// becomes the query, without the name it starts with ("reads the named file
// and returns the contents"); its one relevant document is the one it was
// cut from. Deprecated declarations, summaries that several declarations
// share and documents with the same text as another are left out.
//
// The source is the Go distribution of -go-version: the local GOROOT when it
// is that version, otherwise the golang.org/toolchain module of that version
// from the Go module proxy (`go mod download`). Files are selected for
// linux/amd64, so the set is the same on every machine.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/build"
	"go/doc"
	"go/parser"
	"go/printer"
	"go/token"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/apiaryhq/apiary/internal/eval"
)

// goVersion is the Go release the set is built from: the one go.mod names.
const goVersion = "go1.26.8"

func main() {
	out := flag.String("out", ".eval/godoc", "directory to write corpus.jsonl, queries.jsonl and qrels/test.tsv into")
	goroot := flag.String("goroot", "", "Go distribution to read (default: the local GOROOT if it is -go-version, else that version's toolchain module)")
	version := flag.String("go-version", goVersion, "Go release to build the set from")
	queries := flag.Int("queries", 1000, "most queries to keep (a fixed sample)")
	minBody := flag.Int("min-body-words", 8, "fewest words a document's text must keep after its summary is cut")
	flag.Parse()
	if err := run(*out, *goroot, *version, *queries, *minBody); err != nil {
		fmt.Fprintln(os.Stderr, "evaldata:", err)
		os.Exit(1)
	}
}

func run(out, goroot, version string, maxQueries, minBody int) error {
	root, err := findGoroot(goroot, version)
	if err != nil {
		return err
	}
	var entries []entry
	for _, tree := range []string{"src", "src/vendor", "src/cmd/vendor"} {
		es, err := collect(root, filepath.Join(root, tree))
		if err != nil {
			return err
		}
		entries = append(entries, es...)
	}
	set := buildSet(entries, maxQueries, minBody)
	if err := set.write(out); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(root, "LICENSE"), filepath.Join(out, "LICENSE")); err != nil {
		return err
	}
	readme := fmt.Sprintf(`# godoc: a known-item set from the Go %s standard library documentation

Built by Apiary's scripts/evaldata from %s (linux/amd64 files).
Source licence: BSD-3-Clause, Copyright The Go Authors (LICENSE beside this file).

%d documents, %d queries, one relevant document each (grade 1).
A query is the first sentence of a doc comment, without the name it starts
with; its document is the declaration and the rest of the doc comment.
`, version, version, len(set.docs), len(set.queries))
	if err := os.WriteFile(filepath.Join(out, "README.md"), []byte(readme), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "evaldata: %d documents, %d queries in %s (from %s)\n", len(set.docs), len(set.queries), out, root)
	return nil
}

// findGoroot returns dir when given, the local GOROOT when it is version,
// and otherwise the directory of version's toolchain module, downloading it.
func findGoroot(dir, version string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	local, err := exec.Command("go", "env", "GOROOT").Output()
	if err == nil {
		root := strings.TrimSpace(string(local))
		if v, err := os.ReadFile(filepath.Join(root, "VERSION")); err == nil && strings.SplitN(string(v), "\n", 2)[0] == version {
			return root, nil
		}
	}
	mod := fmt.Sprintf("golang.org/toolchain@v0.0.1-%s.%s-%s", version, runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(os.Stderr, "evaldata: the local Go is not %s; downloading %s\n", version, mod)
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	cmd.Dir = os.TempDir() // outside any module
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", mod, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(b, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no directory (%s)", mod, info.Error)
	}
	return info.Dir, nil
}

// entry is one documented declaration.
type entry struct {
	id      string // import path and name: net/http.Client.Do
	decl    string // its declaration, without body
	summary string // the doc comment's first sentence
	body    string // the doc comment after it, white space collapsed
	name    string // the name the summary starts with: Do, Client, http
}

// collect reads the packages under src, with the files built for
// linux/amd64: the standard library's and, under the vendor directories,
// the golang.org/x packages the distribution carries (but x/sys and x/arch,
// platform tables). Commands, internal packages and test data are left out.
func collect(goroot, src string) ([]entry, error) {
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled = "linux", "amd64", true
	ctx.GOROOT = goroot
	vendored := filepath.Base(src) == "vendor"
	var out []entry
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		for _, el := range strings.Split(rel, "/") {
			if el == "internal" || el == "testdata" || !vendored && (el == "vendor" || el == "cmd") || strings.HasPrefix(el, ".") || strings.HasPrefix(el, "_") {
				return filepath.SkipDir
			}
		}
		switch {
		case vendored && !strings.HasPrefix(rel, "golang.org/x/"):
			return nil
		case hasPath(rel, "golang.org/x/sys", "golang.org/x/arch"):
			return filepath.SkipDir
		case rel == "syscall" || rel == "unsafe" || rel == "builtin":
			return nil // platform tables and pseudo-packages
		}
		bp, err := ctx.ImportDir(path, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if bp.Name == "main" {
			return nil
		}
		es, err := pkgEntries(path, rel, append(bp.GoFiles, bp.CgoFiles...))
		out = append(out, es...)
		return err
	})
	return out, err
}

// pkgEntries returns the documented exported declarations of one package.
func pkgEntries(dir, importPath string, names []string) ([]entry, error) {
	fset := token.NewFileSet()
	var files []*ast.File
	for _, n := range names {
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	p, err := doc.NewFromFiles(fset, files, importPath)
	if err != nil {
		return nil, err
	}
	var out []entry
	add := func(id, name, decl, text string) {
		if e, ok := newEntry(p, id, name, decl, text); ok {
			out = append(out, e)
		}
	}
	add(importPath, p.Name, "package "+p.Name, p.Doc)
	for _, f := range p.Funcs {
		add(importPath+"."+f.Name, f.Name, funcDecl(fset, f.Decl), f.Doc)
	}
	for _, t := range p.Types {
		add(importPath+"."+t.Name, t.Name, typeDecl(fset, t), t.Doc)
		for _, f := range t.Funcs {
			add(importPath+"."+f.Name, f.Name, funcDecl(fset, f.Decl), f.Doc)
		}
		for _, f := range t.Methods {
			add(importPath+"."+t.Name+"."+f.Name, f.Name, funcDecl(fset, f.Decl), f.Doc)
		}
	}
	return out, nil
}

// newEntry splits a doc comment into its summary and the rest, as plain
// text; false when it is deprecated or has no summary.
func newEntry(p *doc.Package, id, name, decl, comment string) (entry, bool) {
	if comment == "" || strings.Contains(comment, "Deprecated:") {
		return entry{}, false
	}
	summary := p.Synopsis(comment)
	pr := p.Printer()
	pr.TextWidth = -1
	words := strings.Fields(string(pr.Text(p.Parser().Parse(comment))))
	sw := strings.Fields(summary)
	if len(sw) == 0 || len(words) < len(sw) || !slices.Equal(words[:len(sw)], sw) {
		return entry{}, false
	}
	return entry{id: id, decl: decl, summary: summary, body: strings.Join(words[len(sw):], " "), name: name}, true
}

// hasPath reports whether path is one of dirs or inside one.
func hasPath(path string, dirs ...string) bool {
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

func funcDecl(fset *token.FileSet, d *ast.FuncDecl) string {
	c := *d
	c.Body, c.Doc = nil, nil
	return node(fset, &c)
}

func typeDecl(fset *token.FileSet, t *doc.Type) string {
	for _, s := range t.Decl.Specs {
		ts, ok := s.(*ast.TypeSpec)
		if !ok || ts.Name.Name != t.Name {
			continue
		}
		switch ts.Type.(type) {
		case *ast.StructType:
			return "type " + t.Name + " struct"
		case *ast.InterfaceType:
			return "type " + t.Name + " interface"
		}
		c := *ts
		c.Doc, c.Comment = nil, nil
		return "type " + node(fset, &c)
	}
	return "type " + t.Name
}

func node(fset *token.FileSet, n any) string {
	var b bytes.Buffer
	if err := printer.Fprint(&b, fset, n); err != nil {
		return ""
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// query turns a summary into a query: without the name it starts with
// ("ReadFile reads …", "A Reader implements …", "Package io provides …")
// and without the final period.
func (e entry) query() string {
	q := e.summary
	for _, lead := range []string{"Package " + e.name + " ", e.name + " ", "A " + e.name + " ", "An " + e.name + " ", "The " + e.name + " "} {
		if rest, ok := strings.CutPrefix(q, lead); ok {
			q = rest
			break
		}
	}
	return strings.TrimSuffix(q, ".")
}

// set is the documents and the queries, each query's relevant document
// having the query's id.
type set struct {
	docs    []eval.Doc
	queries []eval.Query
}

// buildSet keeps the entries with a body of at least minBody words and a
// text no other entry has, and up to maxQueries of their queries, those of
// 4 to 40 words, ending a sentence, that no other entry's summary gives,
// chosen by a hash of the id.
func buildSet(entries []entry, maxQueries, minBody int) set {
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	entries = slices.CompactFunc(entries, func(a, b entry) bool { return a.id == b.id })
	bodies := map[string]int{}
	queries := map[string]int{}
	for _, e := range entries {
		bodies[e.body]++
		queries[strings.ToLower(e.query())]++
	}
	var s set
	var candidates []entry
	for _, e := range entries {
		if len(strings.Fields(e.body)) < minBody || bodies[e.body] > 1 {
			continue
		}
		s.docs = append(s.docs, eval.Doc{ID: e.id, Title: e.id, Text: e.decl + "\n\n" + e.body})
		// A summary that stops at a paragraph break instead of a period is
		// cut short ("returns a PublicKey implementing one of").
		if n := len(strings.Fields(e.query())); n >= 4 && n <= 40 && strings.HasSuffix(e.summary, ".") && queries[strings.ToLower(e.query())] == 1 {
			candidates = append(candidates, e)
		}
	}
	slices.SortFunc(candidates, func(a, b entry) int { return cmpUint(hash(a.id), hash(b.id)) })
	for _, e := range candidates[:min(maxQueries, len(candidates))] {
		s.queries = append(s.queries, eval.Query{ID: e.id, Text: e.query()})
	}
	slices.SortFunc(s.queries, func(a, b eval.Query) int { return strings.Compare(a.ID, b.ID) })
	return s
}

func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// write writes the set in BEIR layout into dir.
func (s set) write(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "qrels"), 0o755); err != nil {
		return err
	}
	if err := writeJSONL(filepath.Join(dir, "corpus.jsonl"), s.docs); err != nil {
		return err
	}
	if err := writeJSONL(filepath.Join(dir, "queries.jsonl"), s.queries); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(eval.QrelsHeader + "\n")
	for _, q := range s.queries {
		fmt.Fprintf(&b, "%s\t%s\t1\n", q.ID, q.ID)
	}
	return os.WriteFile(filepath.Join(dir, "qrels", "test.tsv"), []byte(b.String()), 0o644)
}

func writeJSONL[T any](path string, items []T) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
