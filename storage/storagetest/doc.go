// Package storagetest holds the conformance suites of the storage ports.
// Every adapter of storage.KV, storage.Blobs and storage.VectorStore runs the
// matching suite from its own tests, against a real server where it has one:
//
//	func TestConformance(t *testing.T) {
//		storagetest.RunVectorStore(t, func(t *testing.T) storage.VectorStore {
//			s, err := local.Open(t.TempDir(), local.Options{})
//			require.NoError(t, err)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suites run their cases in parallel, each with a store of its own from
// the factory. They also export deterministic fixtures (Vector, NewRecord,
// Terms) and BM25, the reference scores of SearchLexical, for other
// packages' tests.
package storagetest

import "testing"

// testCase is one case of a suite over ports of type S.
type testCase[S any] struct {
	name string
	run  func(t *testing.T, s S)
}

// runCases runs each case in parallel with a port of its own from newS.
func runCases[S any](t *testing.T, newS func(t *testing.T) S, cases []testCase[S]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newS(t))
		})
	}
}
