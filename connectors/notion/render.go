package notion

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
)

// block is a Notion block: its common fields and the object named by its
// type, read into one struct holding every type's fields that are rendered.
type block struct {
	ID          string
	Type        string
	HasChildren bool
	Archived    bool
	InTrash     bool
	Data        blockData
}

type blockData struct {
	RichText        []richText   `json:"rich_text"`
	Checked         bool         `json:"checked"`
	Language        string       `json:"language"`
	Caption         []richText   `json:"caption"`
	Title           string       `json:"title"`      // child_page
	URL             string       `json:"url"`        // bookmark, embed, link_preview
	Expression      string       `json:"expression"` // equation
	Type            string       `json:"type"`       // a file object: "external" or "file"
	External        *fileURL     `json:"external"`
	File            *fileURL     `json:"file"`
	Name            string       `json:"name"`
	Cells           [][]richText `json:"cells"` // table_row
	HasColumnHeader bool         `json:"has_column_header"`
	Icon            *struct {
		Type  string `json:"type"`
		Emoji string `json:"emoji"`
	} `json:"icon"`
}

type fileURL struct {
	URL string `json:"url"`
}

func (b *block) UnmarshalJSON(data []byte) error {
	var common struct {
		ID          string `json:"id"`
		Type        string `json:"type"`
		HasChildren bool   `json:"has_children"`
		Archived    bool   `json:"archived"`
		InTrash     bool   `json:"in_trash"`
	}
	if err := json.Unmarshal(data, &common); err != nil {
		return err
	}
	*b = block{ID: common.ID, Type: common.Type, HasChildren: common.HasChildren, Archived: common.Archived, InTrash: common.InTrash}
	var typed map[string]json.RawMessage
	if err := json.Unmarshal(data, &typed); err != nil {
		return err
	}
	if raw, ok := typed[common.Type]; ok && rendered[common.Type] {
		// A payload not of the pinned version's shape leaves the block
		// empty (it renders as nothing) rather than failing the page.
		if json.Unmarshal(raw, &b.Data) != nil {
			b.Data = blockData{}
		}
	}
	return nil
}

// rendered are the block types whose payload is read.
var rendered = map[string]bool{
	"paragraph": true, "heading_1": true, "heading_2": true, "heading_3": true,
	"bulleted_list_item": true, "numbered_list_item": true, "to_do": true, "toggle": true,
	"quote": true, "callout": true, "code": true, "equation": true, "table_row": true,
	"child_page": true, "bookmark": true, "embed": true, "link_preview": true,
	"image": true, "file": true, "pdf": true, "video": true, "audio": true,
}

// containers are read through: their children are rendered in their place.
var containers = map[string]bool{"column_list": true, "column": true, "synced_block": true}

// renderer renders one page, asking for its blocks as it goes, within the
// connector's caps.
type renderer struct {
	c      *Connector
	ctx    context.Context
	what   string
	out    bytes.Buffer
	blocks int
}

func (r *renderer) page(p *page) error {
	title := strings.TrimSpace(strings.ReplaceAll(p.title(), "\n", " "))
	if title == "" {
		title = "Untitled"
	}
	r.out.WriteString("# " + title + "\n")
	if err := r.children(p.ID, 1, "", "page"); err != nil {
		return err
	}
	return r.check()
}

// check fails once the Markdown is over the cap.
func (r *renderer) check() error {
	if int64(r.out.Len()) > r.c.cfg.MaxBytes {
		return connectors.TooLarge(r.what, r.c.cfg.MaxBytes)
	}
	return nil
}

// each calls fn with every child block of id, a page of them at a time.
func (r *renderer) each(id string, fn func(b *block) error) error {
	start := ""
	for {
		res, err := r.c.children(r.ctx, id, start, MaxPageSize)
		for tries := 0; err != nil && r.waitable(err) && tries < maxRenderRetries; tries++ {
			d, _ := apiary.RetryDelay(err)
			if werr := r.c.cfg.Wait(r.ctx, d); werr != nil {
				return fmt.Errorf("%s: %w", r.what, werr)
			}
			res, err = r.c.children(r.ctx, id, start, MaxPageSize)
		}
		if err != nil {
			return err
		}
		for i := range res.Results {
			b := &res.Results[i]
			r.blocks++
			if r.blocks > r.c.cfg.MaxBlocks {
				return apiary.E(apiary.KindTooLarge, "%s has more than %d blocks", r.what, r.c.cfg.MaxBlocks)
			}
			if b.Archived || b.InTrash {
				continue
			}
			if err := fn(b); err != nil {
				return err
			}
		}
		if start = res.next(); start == "" {
			return nil
		}
	}
}

// waitable reports whether err is a wait short enough to sit out within a
// render: a rate limit or an overload naming at most MaxRenderWait.
func (r *renderer) waitable(err error) bool {
	d, ok := apiary.RetryDelay(err)
	k := apiary.KindOf(err)
	return ok && d <= MaxRenderWait && (k == apiary.KindRateLimited || k == apiary.KindUnavailable)
}

func isList(typ string) bool {
	return typ == "bulleted_list_item" || typ == "numbered_list_item" || typ == "to_do"
}

// children renders the children of block id, of type parent, at depth,
// each line after prefix. The parent's own line is written: a blank line
// separates it from its first child, but for a list nested in a list item.
func (r *renderer) children(id string, depth int, prefix, parent string) error {
	prev := ""  // the type of the last sibling written
	number := 0 // of a numbered list item in its run
	return r.each(id, func(b *block) error {
		if containers[b.Type] {
			// Read through: its children stand in its place.
			if !b.HasChildren || depth >= r.c.cfg.MaxDepth {
				return nil
			}
			prev = b.Type
			return r.children(b.ID, depth+1, prefix, parent)
		}
		if b.Type == "numbered_list_item" {
			if prev != b.Type {
				number = 0
			}
			number++
		}
		text, ok := r.render(b, number)
		if !ok {
			return nil
		}
		switch {
		case prev == "" && isList(parent) && isList(b.Type):
		case isList(prev) && prev == b.Type:
		default:
			r.blank(prefix)
		}
		prev = b.Type
		if b.Type == "table" {
			if err := r.table(b, prefix); err != nil {
				return err
			}
		} else {
			r.lines(prefix, text)
		}
		if err := r.check(); err != nil {
			return err
		}
		if !b.HasChildren || depth >= r.c.cfg.MaxDepth || b.Type == "table" || b.Type == "child_page" {
			return nil
		}
		return r.children(b.ID, depth+1, prefix+childIndent(b.Type, number), b.Type)
	})
}

// childIndent is the indentation of a block's children under its line.
func childIndent(typ string, number int) string {
	switch typ {
	case "bulleted_list_item", "to_do":
		return "  "
	case "numbered_list_item":
		return strings.Repeat(" ", len(strconv.Itoa(number))+2)
	case "quote", "callout":
		return "> "
	}
	return ""
}

// blank writes a blank line after prefix (its trailing spaces trimmed).
func (r *renderer) blank(prefix string) {
	if r.out.Len() == 0 {
		return
	}
	r.out.WriteString(strings.TrimRight(prefix, " ") + "\n")
}

// lines writes text's lines, each after prefix.
func (r *renderer) lines(prefix, text string) {
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" {
			r.out.WriteString(strings.TrimRight(prefix, " ") + "\n")
			continue
		}
		r.out.WriteString(prefix + line + "\n")
	}
}

// render is the Markdown of b without its children; false for a block
// that renders nothing.
func (r *renderer) render(b *block, number int) (string, bool) {
	d := &b.Data
	text := markdown(d.RichText)
	switch b.Type {
	case "paragraph":
		return text, text != ""
	case "heading_1", "heading_2", "heading_3":
		level := int(b.Type[len(b.Type)-1] - '0')
		return strings.Repeat("#", level+1) + " " + strings.ReplaceAll(text, "\n", " "), text != ""
	case "bulleted_list_item":
		return "- " + text, true
	case "numbered_list_item":
		return strconv.Itoa(number) + ". " + text, true
	case "to_do":
		box := "[ ]"
		if d.Checked {
			box = "[x]"
		}
		return "- " + box + " " + text, true
	case "toggle":
		return text, text != ""
	case "quote":
		return quote(text), true
	case "callout":
		if d.Icon != nil && d.Icon.Type == "emoji" && d.Icon.Emoji != "" {
			text = d.Icon.Emoji + " " + text
		}
		return quote(text), true
	case "code":
		return fence(plain(d.RichText), d.Language), true
	case "divider":
		return "---", true
	case "equation":
		return "$$\n" + d.Expression + "\n$$", d.Expression != ""
	case "table":
		return "", true
	case "child_page":
		return "[" + linkText(orDefault(d.Title, "Untitled")) + "](https://www.notion.so/" + strings.ReplaceAll(b.ID, "-", "") + ")", true
	case "bookmark", "embed", "link_preview":
		if d.URL == "" {
			return "", false
		}
		return "[" + linkText(orDefault(plain(d.Caption), d.URL)) + "](" + d.URL + ")", true
	case "image", "file", "pdf", "video", "audio":
		u := d.fileURL()
		label := linkText(orDefault(plain(d.Caption), orDefault(d.Name, b.Type)))
		if u == "" {
			return label, true
		}
		if b.Type == "image" {
			return "![" + label + "](" + u + ")", true
		}
		return "[" + label + "](" + u + ")", true
	}
	return "", false
}

// fileURL is a file block's URL: an external one as given, a
// Notion-hosted one without its query (an expiring signature).
func (d *blockData) fileURL() string {
	switch {
	case d.Type == "external" && d.External != nil:
		return d.External.URL
	case d.Type == "file" && d.File != nil:
		u, err := url.Parse(d.File.URL)
		if err != nil {
			return ""
		}
		u.RawQuery, u.Fragment = "", ""
		return u.String()
	}
	return ""
}

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

func linkText(s string) string {
	return strings.NewReplacer("[", `\[`, "]", `\]`, "\n", " ").Replace(s)
}

func quote(text string) string {
	return "> " + strings.ReplaceAll(text, "\n", "\n> ")
}

// fence is code in a fence longer than any run of backticks in it.
func fence(code, language string) string {
	f := strings.Repeat("`", max(3, longestRun(code, '`')+1))
	if language == "plain text" {
		language = ""
	}
	return f + strings.ReplaceAll(language, " ", "-") + "\n" + code + "\n" + f
}

// table writes a table block's rows, the first as the header.
func (r *renderer) table(b *block, prefix string) error {
	rows := 0
	return r.each(b.ID, func(row *block) error {
		if row.Type != "table_row" {
			return nil
		}
		cells := make([]string, len(row.Data.Cells))
		for i, c := range row.Data.Cells {
			cells[i] = strings.NewReplacer("|", `\|`, "\n", " ").Replace(markdown(c))
		}
		r.out.WriteString(prefix + "| " + strings.Join(cells, " | ") + " |\n")
		if rows == 0 {
			r.out.WriteString(prefix + strings.Repeat("| --- ", len(cells)) + "|\n")
		}
		rows++
		return r.check()
	})
}

// markdown renders rich text with its annotations and links.
func markdown(rt []richText) string {
	var b strings.Builder
	for _, t := range rt {
		s := t.PlainText
		if t.Type == "equation" && t.Equation != nil {
			b.WriteString("$" + t.Equation.Expression + "$")
			continue
		}
		// Markers must touch the text: spaces go outside them.
		core := strings.TrimSpace(s)
		if core == "" {
			b.WriteString(s)
			continue
		}
		lead := s[:strings.Index(s, core)]
		trail := s[len(lead)+len(core):]
		a := t.Annotations
		if a.Code {
			core = codeSpan(core)
		}
		if t.Href != nil && *t.Href != "" {
			core = "[" + core + "](" + *t.Href + ")"
		}
		if a.Strikethrough {
			core = "~~" + core + "~~"
		}
		if a.Italic {
			core = "*" + core + "*"
		}
		if a.Bold {
			core = "**" + core + "**"
		}
		b.WriteString(lead + core + trail)
	}
	return b.String()
}

// codeSpan is s as inline code, its delimiter longer than any backtick
// run in it (padded with a space where s starts or ends with one).
func codeSpan(s string) string {
	d := strings.Repeat("`", longestRun(s, '`')+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return d + " " + s + " " + d
	}
	return d + s + d
}

// longestRun is the length of the longest run of c in s.
func longestRun(s string, c rune) int {
	longest, run := 0, 0
	for _, r := range s {
		if r == c {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}
