// Package config loads YAML configuration files strictly and reports every problem as
// file:line: field: message, so that an operator can go straight to the line that is wrong.
//
// Loading happens in two passes: the YAML is decoded into the target struct with unknown fields
// refused, then the struct's own Validate method checks meaning (a regex that does not compile, a
// port out of range) and names the offending field by its path, such as
// "collectors.process_groups[1].match.cmdline"; the loader maps that path back to a line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is a problem with one field, named by its path in the document.
type FieldError struct {
	Field string `json:"field"` // dotted path with [i] for list items, e.g. "collectors.listeners[0].port"
	Msg   string `json:"message"`
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Errorf builds a FieldError.
func Errorf(field, format string, args ...any) FieldError {
	return FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Validator is implemented by configuration types that check their own meaning.
type Validator interface {
	Validate() []FieldError
}

// Problem is one error located in a file.
type Problem struct {
	File  string
	Line  int // 0 when the line is unknown
	Field string
	Msg   string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error holds every problem found in one file, so an operator fixes them in one go.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// LoadFile reads path into v (a pointer to a struct with yaml tags) and validates it.
func LoadFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	return Load(path, data, v)
}

// Load decodes data, named file in errors, into v and validates it.
func Load(file string, data []byte, v any) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return &Error{Problems: []Problem{yamlProblem(file, err)}}
	}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) { // EOF: only comments
			var te *yaml.TypeError
			if errors.As(err, &te) {
				probs := make([]Problem, 0, len(te.Errors))
				for _, msg := range te.Errors {
					probs = append(probs, typeProblem(file, &root, msg))
				}
				return &Error{Problems: probs}
			}
			return &Error{Problems: []Problem{yamlProblem(file, err)}}
		}
	}
	val, ok := v.(Validator)
	if !ok {
		return nil
	}
	ferrs := val.Validate()
	if len(ferrs) == 0 {
		return nil
	}
	probs := make([]Problem, len(ferrs))
	for i, fe := range ferrs {
		probs[i] = Problem{File: file, Line: LineOf(&root, fe.Field), Field: fe.Field, Msg: fe.Msg}
	}
	return &Error{Problems: probs}
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func yamlProblem(file string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: n, Msg: m[2]}
	}
	return Problem{File: file, Msg: msg}
}

var (
	unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	typeLineRE     = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// typeProblem turns one of yaml's type errors ("line 7: field colour not found in type x.Config")
// into a Problem that names the field by its full path.
func typeProblem(file string, root *yaml.Node, msg string) Problem {
	p := Problem{File: file, Msg: msg}
	m := typeLineRE.FindStringSubmatch(msg)
	if m == nil {
		return p
	}
	p.Line, _ = strconv.Atoi(m[1])
	p.Msg = m[2]
	if u := unknownFieldRE.FindStringSubmatch(p.Msg); u != nil {
		p.Msg = "unknown field"
		p.Field = pathAt(root, p.Line, u[1], true)
		return p
	}
	p.Field = pathAt(root, p.Line, "", false)
	return p
}

// LineOf returns the line of the field at path (dotted, with [i] for list items) in the document:
// the line of its key for a mapping field, of the item for a list item. A path that goes past what
// the document holds gives the line of its nearest existing ancestor; 0 for an empty document.
func LineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, seg := range splitPath(path) {
		next, l := child(n, seg)
		if next == nil {
			break
		}
		n, line = next, l
	}
	return line
}

func splitPath(path string) []string {
	if path == "" {
		return nil
	}
	var segs []string
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			if i < 0 {
				segs = append(segs, part)
				break
			}
			if i > 0 {
				segs = append(segs, part[:i])
			}
			j := strings.IndexByte(part, ']')
			if j < i {
				segs = append(segs, part[i:])
				break
			}
			segs = append(segs, part[i:j+1])
			part = part[j+1:]
		}
	}
	return segs
}

// child returns the node under n named by seg and the line that names it.
func child(n *yaml.Node, seg string) (*yaml.Node, int) {
	if strings.HasPrefix(seg, "[") {
		idx, err := strconv.Atoi(strings.Trim(seg, "[]"))
		if err != nil || n.Kind != yaml.SequenceNode || idx < 0 || idx >= len(n.Content) {
			return nil, 0
		}
		return n.Content[idx], n.Content[idx].Line
	}
	if n.Kind != yaml.MappingNode {
		return nil, 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == seg {
			return n.Content[i+1], n.Content[i].Line
		}
	}
	return nil, 0
}

// pathAt finds the path of the node on the given line: the key named key when keyOnly, otherwise the
// value that starts on that line. It walks the whole tree; configuration files are small.
func pathAt(root *yaml.Node, line int, key string, keyOnly bool) string {
	var found string
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if found != "" {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if k.Line == line && (!keyOnly || k.Value == key) {
					found = p
					return
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				if !keyOnly && c.Kind == yaml.ScalarNode && c.Line == line {
					found = p
					return
				}
				walk(c, p)
			}
		}
	}
	walk(root, "")
	if found == "" && keyOnly {
		return key
	}
	return found
}

// ValidationError lists every problem with one write's input (a form, an API request); nothing
// was written. Domain packages return it so a handler can name each field in its answer.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		msgs[i] = f.Error()
	}
	return "invalid: " + strings.Join(msgs, "; ")
}

// FieldErrors returns the field errors carried by err, or nil when err is not a validation error.
func FieldErrors(err error) []FieldError {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Fields
	}
	return nil
}

// Invalid is a *ValidationError of fields, or nil when there are none.
func Invalid(fields ...FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	return &ValidationError{Fields: fields}
}
