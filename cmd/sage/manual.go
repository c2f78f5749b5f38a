//go:build !agentonly

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/serversage/sage/internal/manual"
	"github.com/serversage/sage/internal/rulepack"
)

func init() {
	commands["manual"] = command{summary: "write the L1 training manual (HTML or PDF) from the alert rules and runbooks", run: runManual}
}

func runManual(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sage manual", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var format, out, rulesDir, title, hubURL, tokenFile string
	fs.StringVar(&format, "format", "html", "`format` of the manual: html or pdf")
	fs.StringVar(&out, "out", "", "`file` to write the manual to (- for standard output); required")
	fs.StringVar(&rulesDir, "rules", "", "`directory` of extra Prometheus rule files (*.yml, *.yaml) and runbooks (<AlertName>.md) to include with the shipped rules")
	fs.StringVar(&hubURL, "hub", "", "`URL` of a hub: the manual of its live rules and each client's overridden watermarks (with --token-file)")
	fs.StringVar(&tokenFile, "token-file", "", "`file` holding an API token of the hub (sage token create)")
	fs.StringVar(&title, "title", "", "the manual's `title` (default \"ServerSage L1 training manual\")")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: sage manual --format html|pdf --out FILE [--rules DIR | --hub URL --token-file FILE] [--title TITLE]")
		fmt.Fprintln(stderr, "\nWrites the L1 training manual: every alert with what it watches, its default watermark and its runbook.")
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sage manual: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	write := map[string]func(io.Writer, manual.Input) error{"html": manual.HTML, "pdf": manual.PDF}[format]
	if write == nil {
		fmt.Fprintf(stderr, "sage manual: --format %q: must be html or pdf\n", format)
		return 2
	}
	if out == "" {
		fmt.Fprintln(stderr, "sage manual: --out is required (a file, or - for standard output)")
		return 2
	}

	var (
		b      bytes.Buffer
		alerts int
	)
	if hubURL != "" {
		if rulesDir != "" || tokenFile == "" {
			fmt.Fprintln(stderr, "sage manual: --hub needs --token-file, and takes the hub's rules instead of --rules")
			return 2
		}
		if err := fetchManual(hubURL, tokenFile, format, &b); err != nil {
			fmt.Fprintf(stderr, "sage manual: %v\n", err)
			return 1
		}
	} else {
		in, err := manualInput(rulesDir, title, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "sage manual: %s\n", indentAfterFirst(err.Error()))
			return 1
		}
		if err := write(&b, in); err != nil {
			fmt.Fprintf(stderr, "sage manual: %v\n", err)
			return 1
		}
		alerts = len(in.Rules)
	}
	if out == "-" {
		if _, err := stdout.Write(b.Bytes()); err != nil {
			fmt.Fprintf(stderr, "sage manual: %v\n", err)
			return 1
		}
		return 0
	}
	if err := writeFileAtomic(out, b.Bytes()); err != nil {
		fmt.Fprintf(stderr, "sage manual: %v\n", err)
		return 1
	}
	if alerts > 0 {
		fmt.Fprintf(stderr, "Wrote the %s manual (%d alerts) to %s\n", strings.ToUpper(format), alerts, out)
	} else {
		fmt.Fprintf(stderr, "Wrote the %s manual of %s to %s\n", strings.ToUpper(format), hubURL, out)
	}
	return 0
}

// fetchManual downloads the live manual from a hub's /api/v1/manual. The token is read from its
// file and never printed.
func fetchManual(hubURL, tokenFile, format string, w io.Writer) error {
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	u, err := url.Parse(strings.TrimSuffix(hubURL, "/") + "/api/v1/manual")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("--hub %q: not an http(s) URL", hubURL)
	}
	u.RawQuery = url.Values{"format": {format}}.Encode()
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	client := &http.Client{Timeout: 2 * time.Minute}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("asking the hub: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("the hub answered %s: %s", res.Status, strings.TrimSpace(string(msg)))
	}
	_, err = io.Copy(w, res.Body)
	return err
}

// manualInput builds the manual from the shipped rule pack plus the rule files and runbooks in
// rulesDir. It is where `--hub URL --token-file F` will plug in: the hub's live rule set and each
// client's overridden watermarks become the Input's Rules and Clients instead.
func manualInput(rulesDir, title string, now time.Time) (manual.Input, error) {
	files, runbooks := rulepack.Shipped()
	if rulesDir != "" {
		if err := readRulesDir(rulesDir, files, runbooks); err != nil {
			return manual.Input{}, err
		}
	}
	p, err := rulepack.Parse(files, runbooks)
	if err != nil {
		return manual.Input{}, fmt.Errorf("the rules are invalid:\n%w", err)
	}
	return manual.FromPack(p, title, now), nil
}

// readRulesDir adds the rule files and runbooks under dir, keyed by their paths so that errors
// name the user's files.
func readRulesDir(dir string, files, runbooks map[string][]byte) error {
	found, err := rulepack.ReadDir(dir, files, runbooks)
	if err != nil {
		return fmt.Errorf("--rules: %w", err)
	}
	if found == 0 {
		return fmt.Errorf("--rules: no rule files (*.yml, *.yaml) or runbooks (*.md) in %s", dir)
	}
	return nil
}

// writeFileAtomic writes through a temporary file and a rename, so that a failed run never leaves
// half a manual where a good one was.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// indentAfterFirst indents the lines after the first, for a multi-line error under its heading.
func indentAfterFirst(s string) string {
	first, rest, ok := strings.Cut(s, "\n")
	if !ok {
		return s
	}
	return first + "\n" + indent(rest, "  ")
}
