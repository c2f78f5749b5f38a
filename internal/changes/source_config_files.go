package changes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"
)

func init() { register("config_files", readConfigFiles) }

// readConfigFiles records each configured file's SHA-256, size, mode and owner, and for a text
// file under the size cap its content, redacted line by line before it is kept anywhere. A file
// that cannot be read is an object with an "error" attribute, so that losing access shows as a
// change instead of failing the whole kind.
func readConfigFiles(ctx context.Context, e *env) (Objects, error) {
	objs := Objects{}
	for _, pattern := range e.cfg.ConfigFiles {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		matches, err := filepath.Glob(e.cfg.rootPath(pattern))
		if err != nil {
			return nil, fmt.Errorf("config_files %q: %w", pattern, err)
		}
		for _, full := range matches {
			key := full
			if e.cfg.RootPath != "" {
				key = "/" + strings.TrimPrefix(strings.TrimPrefix(full, filepath.Clean(e.cfg.RootPath)), "/")
			}
			if o := readConfigFile(full, e); o != nil {
				objs[key] = o
			}
		}
	}
	return objs, nil
}

func readConfigFile(path string, e *env) Object {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // vanished between glob and stat
		}
		return Object{"error": err.Error()}
	}
	o := Object{"mode": fi.Mode().String()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		o["uid"], o["gid"] = strconv.FormatUint(uint64(st.Uid), 10), strconv.FormatUint(uint64(st.Gid), 10)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		t, err := os.Readlink(path)
		if err != nil {
			o["error"] = err.Error()
		}
		o["target"] = t
		return o
	}
	if fi.IsDir() || !fi.Mode().IsRegular() {
		return o
	}
	f, err := os.Open(path)
	if err != nil {
		o["error"] = err.Error()
		return o
	}
	defer f.Close()
	h := sha256.New()
	var keep bytes.Buffer
	n, err := io.Copy(h, io.TeeReader(f, &capWriter{buf: &keep, max: e.cfg.MaxTextBytes}))
	if err != nil {
		o["error"] = err.Error()
		return o
	}
	o["size"] = strconv.FormatInt(n, 10)
	o["sha256"] = hex.EncodeToString(h.Sum(nil))
	if n <= e.cfg.MaxTextBytes && isText(keep.Bytes()) {
		o[contentAttr] = Redact(keep.String(), e.redact)
	}
	return o
}

// capWriter keeps at most max bytes, and silently drops the rest (the file is then too big to keep).
type capWriter struct {
	buf *bytes.Buffer
	max int64
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max + 1 - int64(w.buf.Len()); room > 0 {
		w.buf.Write(p[:min(int64(len(p)), room)])
	}
	return len(p), nil
}

func isText(b []byte) bool { return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 }

// Redact applies the rules to every line of s: a rule with a group keeps the group and replaces
// the rest of the line; without a group it replaces what it matched.
func Redact(s string, rules []*regexp.Regexp) string {
	if len(rules) == 0 {
		return s
	}
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		body, nl := strings.CutSuffix(l, "\n")
		for _, re := range rules {
			if re.NumSubexp() > 0 {
				if m := re.FindStringSubmatchIndex(body); m != nil && m[2] >= 0 {
					body = body[:m[3]] + "<redacted>"
				}
				continue
			}
			body = re.ReplaceAllLiteralString(body, "<redacted>")
		}
		if nl {
			body += "\n"
		}
		lines[i] = body
	}
	return strings.Join(lines, "")
}
