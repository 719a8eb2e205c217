package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
)

// readBody reads the whole request body (bounded by the bodyLimit middleware).
func readBody(c echo.Context) ([]byte, error) {
	// An *http.MaxBytesError becomes 413 in problemFor.
	return io.ReadAll(c.Request().Body)
}

// mediaType returns the request's media type, lower case, without parameters.
func mediaType(c echo.Context) (string, map[string]string, error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct == "" {
		return "", nil, nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", nil, apiary.E(apiary.KindInvalid, "the Content-Type header is malformed: %v", err)
	}
	return mt, params, nil
}

// sendJSON is the answer to a JSON route's body sent as something else.
const sendJSON = "send the body as JSON with the header \"Content-Type: application/json\""

func isJSON(mt string) bool {
	return mt == echo.MIMEApplicationJSON || strings.HasSuffix(mt, "+json")
}

// readJSON reads a JSON request body into v, strictly: Content-Type must be
// JSON, the body non-empty valid UTF-8 holding exactly one object with no
// unknown fields.
func readJSON(c echo.Context, v any) error {
	mt, _, err := mediaType(c)
	if err != nil {
		return err
	}
	if !isJSON(mt) {
		return unsupportedMediaType(sendJSON)
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// readOptionalJSON is readJSON for a route whose body may be left out: an
// empty (or blank) body, however it is framed (no Content-Length, or a
// chunked one), leaves v as it is.
func readOptionalJSON(c echo.Context, v any) error {
	if c.Request().ContentLength == 0 {
		return nil
	}
	body, err := readBody(c)
	if err != nil || len(bytes.TrimSpace(body)) == 0 {
		return err
	}
	mt, _, err := mediaType(c)
	if err != nil {
		return err
	}
	if !isJSON(mt) {
		return unsupportedMediaType(sendJSON)
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes body into v, saying where the body is wrong.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return apiary.E(apiary.KindInvalid, "the request body is empty; send a JSON object")
	}
	if !utf8.Valid(body) {
		return apiary.E(apiary.KindInvalid, "the request body is not valid UTF-8 (%s)", position(body, invalidUTF8At(body)))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			te.Field = jsonFieldPath(reflect.TypeOf(v), te.Field)
		}
		return jsonError(body, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return apiary.E(apiary.KindInvalid, "malformed JSON: unexpected data after the top-level value (%s)", position(body, int(dec.InputOffset())))
	}
	return checkKeys(body, reflect.TypeOf(v))
}

// checkKeys walks body (valid JSON, its nesting already bounded by the
// decoder) beside t, the type it was decoded into, and refuses what
// encoding/json lets through: a key sent twice in one object, at any depth
// (the last would win), and an object key that matches a struct field only
// case-insensitively. A gateway rule reading the body and Apiary so always
// see the same request.
func checkKeys(body []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	return checkValue(dec, t, nil)
}

// keyPath is where a value sits in the body ("documents[1].metadata.k"),
// as a chain to its parent: spelled out only for an error message, since
// copying the path for every value is quadratic in a long key over many
// values or in keys nested deep.
type keyPath struct {
	parent *keyPath
	key    string
	index  int
	isKey  bool
}

// String spells the path out, in one pass over its chain.
func (p *keyPath) String() string {
	var chain []*keyPath
	for ; p != nil; p = p.parent {
		chain = append(chain, p)
	}
	var b strings.Builder
	for i := len(chain) - 1; i >= 0; i-- {
		switch p := chain[i]; {
		case !p.isKey:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.index))
			b.WriteByte(']')
		case b.Len() == 0:
			b.WriteString(p.key)
		default:
			b.WriteByte('.')
			b.WriteString(p.key)
		}
	}
	return b.String()
}

func checkValue(dec *json.Decoder, t reflect.Type, path *keyPath) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonError(nil, err)
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	t = knownShape(t)
	switch delim {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkValue(dec, elem, &keyPath{parent: path, index: i}); err != nil {
				return err
			}
		}
	case '{':
		var (
			fields map[string]reflect.Type
			elem   reflect.Type
		)
		switch {
		case t == nil:
		case t.Kind() == reflect.Struct:
			fields = jsonFields(t)
		case t.Kind() == reflect.Map:
			elem = t.Elem()
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return jsonError(nil, err)
			}
			key, _ := tok.(string)
			at := &keyPath{parent: path, key: key, isKey: true}
			if seen[key] {
				return apiary.E(apiary.KindInvalid, "duplicate JSON key %s; send each key once", quoteKey(at.String()))
			}
			seen[key] = true
			ft := elem
			if fields != nil {
				var known bool
				if ft, known = fields[key]; !known {
					return unknownKey(at.String(), key, fields)
				}
			}
			if err := checkValue(dec, ft, at); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	if err != nil {
		return jsonError(nil, err)
	}
	return nil
}

// unknownKey refuses key, which encoding/json matched to a field
// case-insensitively (an unknown one it already refused).
func unknownKey(at, key string, fields map[string]reflect.Type) error {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return apiary.E(apiary.KindInvalid, "unknown JSON field %s: keys are case-sensitive (did you mean %q?)", quoteKey(at), name)
		}
	}
	return apiary.E(apiary.KindInvalid, "unknown JSON field %s: keys are case-sensitive; see /v1/openapi.yaml for the fields this route takes", quoteKey(at))
}

// quoteKey quotes a key path for a message, cut short when long.
func quoteKey(k string) string {
	const max = 64
	if len(k) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(k[cut]) {
			cut--
		}
		k = k[:cut] + "…"
	}
	return strconv.Quote(k)
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// knownShape is t without pointers, or nil when its JSON shape is not known
// from its fields: an interface, or a type that decodes itself.
func knownShape(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() == reflect.Interface {
		return nil
	}
	if p := reflect.PointerTo(t); p.Implements(jsonUnmarshaler) || (t.Kind() == reflect.Struct && p.Implements(textUnmarshaler)) {
		return nil
	}
	return t
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields maps the JSON names of struct t's fields, as encoding/json
// names them (tags, untagged embedded structs inlined), to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	out := map[string]reflect.Type{}
	for _, f := range reflect.VisibleFields(t) {
		if f.Anonymous || !f.IsExported() {
			continue
		}
		if len(f.Index) > 1 && !inlined(t, f.Index) {
			continue // a field of an embedded struct that a tag names: not inlined
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = f.Type
	}
	fieldCache.Store(t, out)
	return out
}

// inlined reports whether the field at index of t is reached only through
// untagged embedded structs, so that encoding/json inlines it.
func inlined(t reflect.Type, index []int) bool {
	for _, i := range index[:len(index)-1] {
		f := t.Field(i)
		if f.Tag.Get("json") != "" {
			return false
		}
		t = f.Type
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	return true
}

// jsonError turns a decoding error into a caller-safe message with a
// position. It never quotes the body.
func jsonError(body []byte, err error) error {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
		pe *time.ParseError
	)
	switch {
	case errors.As(err, &pe), strings.HasPrefix(err.Error(), "Time.UnmarshalJSON"):
		// time.Time's own decoding error, without the field: say what a time is.
		return apiary.E(apiary.KindInvalid, "a time in the body is not an RFC 3339 string with a time zone; send one like \"2030-01-02T15:04:05Z\"")
	case errors.As(err, &se):
		return apiary.E(apiary.KindInvalid, "malformed JSON at %s: %s", position(body, int(se.Offset)), se.Error())
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "the top-level value"
		} else {
			field = "field " + strconvQuote(field)
		}
		return apiary.E(apiary.KindInvalid, "wrong JSON type at %s: %s must be %s, not %s", position(body, int(te.Offset)), field, jsonTypeName(te.Type.Kind().String()), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return apiary.E(apiary.KindInvalid, "malformed JSON: the body ends before the value does")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return apiary.E(apiary.KindInvalid, "unknown JSON field %s; see /v1/openapi.yaml for the fields this route takes", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	var ie *apiary.Error
	if errors.As(err, &ie) {
		return err
	}
	return apiary.E(apiary.KindInvalid, "malformed JSON")
}

// jsonFieldPath drops from path, encoding/json's dotted path to a field of
// t, the Go names of embedded structs ("tokenExpiry.expires_in" becomes
// "expires_in"), so that an error names the field as the client sent it.
func jsonFieldPath(t reflect.Type, path string) string {
	var kept []string
	for _, seg := range strings.Split(path, ".") {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map) {
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			kept, t = append(kept, seg), nil
			continue
		}
		if f, ok := t.FieldByName(seg); ok && f.Anonymous && f.Tag.Get("json") == "" {
			t = f.Type
			continue
		}
		kept = append(kept, seg)
		t = fieldByJSONName(t, seg)
	}
	return strings.Join(kept, ".")
}

// fieldByJSONName returns the type of t's field (embedded ones included)
// spelled name in JSON, or nil.
func fieldByJSONName(t reflect.Type, name string) reflect.Type {
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name || (tag == "" && f.Name == name) {
			return f.Type
		}
	}
	return nil
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

func jsonTypeName(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "a whole number"
	}
	return "a number"
}

// position renders a byte offset as "line L, column C (byte B)".
func position(body []byte, off int) string {
	if off > len(body) {
		off = len(body)
	}
	if off < 0 {
		off = 0
	}
	line := 1 + bytes.Count(body[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(body[:off], '\n')
	return fmt.Sprintf("line %d, column %d (byte %d)", line, col, off)
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// checkName validates a human-readable name field.
func checkName(field, s string, max int) error {
	switch {
	case strings.TrimSpace(s) == "":
		return apiary.E(apiary.KindInvalid, "%s is required", field)
	case len(s) > max:
		return apiary.E(apiary.KindInvalid, "%s is longer than %d bytes", field, max)
	case !utf8.ValidString(s):
		return apiary.E(apiary.KindInvalid, "%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return apiary.E(apiary.KindInvalid, "%s must not contain control characters", field)
		}
	}
	return nil
}

// scalarMap turns JSON metadata (strings, numbers, booleans) into strings.
func scalarMap(what string, m map[string]json.RawMessage) (map[string]string, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for k, raw := range m {
		if k == "" {
			return nil, apiary.E(apiary.KindInvalid, "%s has an empty key", what)
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			return nil, apiary.E(apiary.KindInvalid, "%s %s has no value", what, quoteKey(k))
		}
		switch raw[0] {
		case '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, apiary.E(apiary.KindInvalid, "%s %s is not a valid string", what, quoteKey(k))
			}
			out[k] = s
		case 't', 'f':
			out[k] = string(raw)
		case '{', '[':
			return nil, apiary.E(apiary.KindInvalid, "%s %s is nested; values must be strings, numbers or booleans", what, quoteKey(k))
		case 'n':
			return nil, apiary.E(apiary.KindInvalid, "%s %s is null; values must be strings, numbers or booleans (leave the key out instead)", what, quoteKey(k))
		default: // a number, already checked by the decoder
			out[k] = string(raw)
		}
	}
	return out, nil
}
