// Package onnx embeds text in-process with a sentence-embedding model run by
// ONNX Runtime. The model table (models.go) names each model with its
// pooling, query prefix, token limit and pinned artifacts.
package onnx
