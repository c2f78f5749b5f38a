package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

type sample struct {
	Name  string  `yaml:"name"`
	Port  int     `yaml:"port"`
	Items []item  `yaml:"items"`
	Inner section `yaml:"inner"`
}

type item struct {
	Pattern string `yaml:"pattern"`
}

type section struct {
	Level int `yaml:"level"`
}

func (s *sample) Validate() []FieldError {
	var errs []FieldError
	if s.Port < 0 || s.Port > 65535 {
		errs = append(errs, Errorf("port", "%d is out of range", s.Port))
	}
	for i, it := range s.Items {
		if _, err := regexp.Compile(it.Pattern); err != nil {
			errs = append(errs, Errorf("items["+itoa(i)+"].pattern", "invalid regular expression: %v", err))
		}
	}
	if s.Inner.Level > 3 {
		errs = append(errs, Errorf("inner.level", "must be at most 3"))
	}
	if s.Name == "forbidden" {
		errs = append(errs, Errorf("missing.deeper", "not allowed"))
	}
	return errs
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each problem, as printed
	}{
		{name: "valid", yaml: "name: a\nport: 80\nitems:\n  - pattern: x+\n"},
		{name: "empty document", yaml: ""},
		{name: "comments only", yaml: "# nothing here\n"},
		{
			name: "unknown field names its path",
			yaml: "name: a\ninner:\n  level: 1\n  colour: red\n",
			want: []string{"f.yml:4: inner.colour: unknown field"},
		},
		{
			name: "wrong type",
			yaml: "name: a\nport: eighty\n",
			want: []string{"f.yml:2: port: cannot unmarshal !!str `eighty` into int"},
		},
		{
			name: "validation error in a list item",
			yaml: "items:\n  - pattern: ok\n  - pattern: \"(\"\n",
			want: []string{"f.yml:3: items[1].pattern: invalid regular expression: error parsing regexp: missing closing ): `(`"},
		},
		{
			name: "several problems at once",
			yaml: "port: 70000\ninner:\n  level: 9\n",
			want: []string{"f.yml:1: port: 70000 is out of range", "f.yml:3: inner.level: must be at most 3"},
		},
		{
			name: "field absent from the file points at its nearest ancestor",
			yaml: "name: forbidden\n",
			want: []string{"f.yml:1: missing.deeper: not allowed"},
		},
		{
			name: "syntax error",
			yaml: "name: a\n  port: 1\n",
			want: []string{"f.yml:2: mapping values are not allowed in this context"},
		},
		{
			name: "tab indentation",
			yaml: "name: a\n\tport: 1\n",
			want: []string{"f.yml:2: found a tab character that violates indentation"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sample
			err := Load("f.yml", []byte(tt.yaml), &s)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			var got []string
			for _, p := range ce.Problems {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	var s sample
	err := LoadFile(filepath.Join(t.TempDir(), "absent.yml"), &s)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestLineOf(t *testing.T) {
	doc := "a:\n  b:\n    - x: 1\n    - x: 2\n      y: 3\nc: 4\n"
	tests := map[string]int{
		"":         1,
		"a":        1,
		"a.b":      2,
		"a.b[1].y": 5,
		"a.b[1]":   4,
		"a.b[7].x": 2,
		"c":        6,
		"zz.top":   1,
	}
	for path, want := range tests {
		root := parse(t, doc)
		if got := LineOf(root, path); got != want {
			t.Errorf("LineOf(%q) = %d, want %d", path, got, want)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("name: a\nport: 80\nitems:\n  - pattern: x+\n"))
	f.Add([]byte("inner:\n  colour: red\n"))
	f.Add([]byte("items: [{pattern: '('}]\nport: -1"))
	f.Add([]byte("- - - : :"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s sample
		err := Load("f.yml", data, &s)
		var ce *Error
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("error of type %T: %v", err, err)
		}
		if ce != nil {
			for _, p := range ce.Problems {
				if p.File != "f.yml" || p.Msg == "" {
					t.Fatalf("problem without file or message: %+v", p)
				}
			}
		}
	})
}
