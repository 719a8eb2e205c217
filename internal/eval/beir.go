// Package eval measures retrieval quality on BEIR-format sets: it reads
// corpus.jsonl, queries.jsonl and qrels/test.tsv, computes nDCG@10, MRR@10
// and Recall@k with their standard definitions, and holds a BM25 index to
// compare against. Standard library only.
//
// The readers stream: ReadCorpus hands one document at a time to its
// caller, so a corpus of any size is read in memory bounded by its largest
// line. Queries and judgements are small and read whole.
package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Doc is one line of corpus.jsonl.
type Doc struct {
	ID    string `json:"_id"`
	Title string `json:"title"`
	Text  string `json:"text"`
}

// Query is one line of queries.jsonl.
type Query struct {
	ID   string `json:"_id"`
	Text string `json:"text"`
}

// Qrels are the relevance judgements: query id → document id → grade.
// A grade above 0 is relevant; higher is more relevant.
type Qrels map[string]map[string]int

// Relevant returns how many documents q has with a grade above 0.
func (qr Qrels) Relevant(q string) int {
	n := 0
	for _, g := range qr[q] {
		if g > 0 {
			n++
		}
	}
	return n
}

// QrelsHeader is the first line of a BEIR qrels file.
const QrelsHeader = "query-id\tcorpus-id\tscore"

// ReadCorpus calls fn with each document of a corpus.jsonl stream, in
// order, and stops at fn's first error, which it returns. A document
// without an _id is an error.
func ReadCorpus(r io.Reader, fn func(Doc) error) error {
	return readJSONL(r, "corpus", func(line int, b []byte) error {
		var d Doc
		if err := json.Unmarshal(b, &d); err != nil {
			return fmt.Errorf("eval: read corpus line %d: %w", line, err)
		}
		if d.ID == "" {
			return fmt.Errorf("eval: read corpus line %d: no _id", line)
		}
		return fn(d)
	})
}

// ReadQueries reads a queries.jsonl stream whole.
func ReadQueries(r io.Reader) ([]Query, error) {
	var qs []Query
	err := readJSONL(r, "queries", func(line int, b []byte) error {
		var q Query
		if err := json.Unmarshal(b, &q); err != nil {
			return fmt.Errorf("eval: read queries line %d: %w", line, err)
		}
		if q.ID == "" || strings.TrimSpace(q.Text) == "" {
			return fmt.Errorf("eval: read queries line %d: a query needs an _id and a text", line)
		}
		qs = append(qs, q)
		return nil
	})
	return qs, err
}

// readJSONL calls fn with each non-blank line of r and its number.
func readJSONL(r io.Reader, what string, fn func(line int, b []byte) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			if ferr := fn(line, b); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("eval: read %s: %w", what, err)
		}
	}
}

// ReadQrels reads a qrels TSV stream: query id, document id and grade per
// line, after an optional QrelsHeader line.
func ReadQrels(r io.Reader) (Qrels, error) {
	qr := Qrels{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" || line == 1 && text == QrelsHeader {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("eval: read qrels line %d: want 3 tab-separated fields (query-id, corpus-id, score), got %d", line, len(f))
		}
		g, err := strconv.Atoi(strings.TrimSpace(f[2]))
		if err != nil {
			return nil, fmt.Errorf("eval: read qrels line %d: score %q is not a whole number", line, f[2])
		}
		if qr[f[0]] == nil {
			qr[f[0]] = map[string]int{}
		}
		qr[f[0]][f[1]] = g
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("eval: read qrels: %w", err)
	}
	return qr, nil
}
