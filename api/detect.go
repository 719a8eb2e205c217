package api

import (
	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/extract"
)

// canonicalType is the media type stored for each format, so that a worker
// detecting the format again from the document's content type alone (its id
// may not carry the extension) finds the same one.
var canonicalType = map[extract.Format]string{
	extract.Text:     "text/plain",
	extract.Markdown: "text/markdown",
	extract.HTML:     "text/html",
	extract.JSON:     "application/json",
	extract.CSV:      "text/csv",
}

// detectContentType checks that an uploaded file is in a supported format
// (415 with the supported list otherwise) and returns its media type.
func detectContentType(filename, contentType string) (string, error) {
	f, err := extract.Detect(filename, contentType)
	if err != nil {
		return "", unsupportedMediaType("%s", apiary.Message(err))
	}
	if ct, ok := canonicalType[f]; ok {
		return ct, nil
	}
	return contentType, nil
}
