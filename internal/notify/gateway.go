package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// defaultGatewayBody is the body when none is configured: JSON, which most gateways accept.
const defaultGatewayBody = `{"to":{{json .To}},"text":{{json .Body}}}`

// maxTemplateLen bounds a configured template; a gateway request is a few fields.
const maxTemplateLen = 16 << 10

// GatewayData is what the gateway's url and body templates see.
type GatewayData struct {
	To       string // E.164 number
	Body     string // the text
	Incident string // incident id
	Key      string // the notification's dedupe key, for gateways that deduplicate
	Secret   string // from secret_file / secret_env
}

var gatewayFuncs = template.FuncMap{
	// json writes a JSON value, so that a text inside a JSON body is quoted and escaped.
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// sampleGatewayData is what a template is tried with when it is configured, so that an unknown
// field ({{.Number}}) is reported at start, not at the first incident.
var sampleGatewayData = GatewayData{To: "+15005550006", Body: "FIRING CRITICAL acme/db1 \"disk\" & more",
	Incident: "0190a0b0-0000-7000-8000-000000000000", Key: "k", Secret: "s"}

// ParseGatewayTemplate parses a gateway url or body template and runs it once on sample data, so
// that unknown fields and functions are errors here.
func ParseGatewayTemplate(name, text string) (*template.Template, error) {
	if len(text) > maxTemplateLen {
		return nil, fmt.Errorf("template is longer than %d bytes", maxTemplateLen)
	}
	// text/template's own errors start "template: <name>:<line>:".
	t, err := template.New(name).Funcs(gatewayFuncs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("template: define and block are not allowed here")
	}
	if t.Tree != nil && t.Tree.Root != nil {
		if err := checkGatewayNode(t.Tree.Root); err != nil {
			return nil, fmt.Errorf("template: %w", err)
		}
	}
	var b bytes.Buffer
	if err := t.Execute(&limitedWriter{w: &b, n: maxTemplateLen * 4}, sampleGatewayData); err != nil {
		return nil, err
	}
	return t, nil
}

// checkGatewayNode refuses what a one-message request has no use for and what could make running
// the template slow or huge: loops (range over a number runs without output), calls of other
// templates, and the print functions (printf "%0999999999d" builds its result before any writer
// can refuse it). What remains writes at most a few times the data per action.
func checkGatewayNode(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkGatewayNode(c); err != nil {
				return err
			}
		}
	case *parse.RangeNode:
		return errors.New("range is not allowed here")
	case *parse.TemplateNode:
		return errors.New("template calls are not allowed here")
	case *parse.IfNode:
		return checkBranch(&n.BranchNode)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode)
	case *parse.ActionNode:
		return checkPipe(n.Pipe)
	}
	return nil
}

func checkBranch(b *parse.BranchNode) error {
	if err := checkPipe(b.Pipe); err != nil {
		return err
	}
	if err := checkGatewayNode(b.List); err != nil {
		return err
	}
	if b.ElseList != nil {
		return checkGatewayNode(b.ElseList)
	}
	return nil
}

func checkPipe(p *parse.PipeNode) error {
	if p == nil {
		return nil
	}
	for _, cmd := range p.Cmds {
		for _, arg := range cmd.Args {
			switch a := arg.(type) {
			case *parse.IdentifierNode:
				switch a.Ident {
				case "print", "printf", "println", "call":
					return fmt.Errorf("%s is not allowed here", a.Ident)
				}
			case *parse.PipeNode:
				if err := checkPipe(a); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// limitedWriter fails once more than n bytes were written, so that a template cannot grow a
// request without bound ({{range}} over a long string is enough to try).
type limitedWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.w.Len()+len(p) > l.n {
		return 0, fmt.Errorf("output is longer than %d bytes", l.n)
	}
	return l.w.Write(p)
}

// sampleURL is a url template as run on sample data, for checking the URL it makes.
func sampleURL(text string) string {
	t, err := ParseGatewayTemplate("url", text)
	if err != nil {
		return text
	}
	var b bytes.Buffer
	if err := t.Execute(&b, sampleGatewayData); err != nil {
		return text
	}
	return b.String()
}

// statusSet is a set of HTTP status ranges, inclusive.
type statusSet [][2]int

func (s statusSet) has(code int) bool {
	for _, r := range s {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}

// ParseStatusSet parses a list of HTTP statuses and ranges, "200-299", "200,202", "2xx", into a
// set; empty means 200-299.
func ParseStatusSet(s string) (statusSet, error) {
	if strings.TrimSpace(s) == "" {
		return statusSet{{200, 299}}, nil
	}
	var set statusSet
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		var lo, hi int
		switch lo0, hi0, isRange := strings.Cut(part, "-"); {
		case len(part) == 3 && strings.HasSuffix(strings.ToLower(part), "xx"):
			d, err := strconv.Atoi(part[:1])
			if err != nil {
				return nil, fmt.Errorf("%q is not a status class such as 2xx", part)
			}
			lo, hi = d*100, d*100+99
		case isRange:
			var err1, err2 error
			lo, err1 = strconv.Atoi(strings.TrimSpace(lo0))
			hi, err2 = strconv.Atoi(strings.TrimSpace(hi0))
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("%q is not a range of statuses such as 200-299", part)
			}
		default:
			n, err := strconv.Atoi(part)
			if err != nil {
				return nil, fmt.Errorf("%q is not an HTTP status", part)
			}
			lo, hi = n, n
		}
		if lo < 100 || hi > 599 || lo > hi {
			return nil, fmt.Errorf("%q: statuses run from 100 to 599, low to high", part)
		}
		set = append(set, [2]int{lo, hi})
	}
	return set, nil
}

// HTTPGateway sends SMS through a gateway configured by HTTPGatewayConfig.
type HTTPGateway struct {
	cfg     HTTPGatewayConfig
	url     *template.Template
	body    *template.Template
	secret  secretRef
	headers []gatewayHeader
	client  *http.Client
}

type gatewayHeader struct {
	name  string
	value string // literal, or
	ref   secretRef
}

// NewHTTPGateway returns a gateway provider for cfg (validated here; secrets are read now to fail
// early, and at every send). client nil means a client with cfg's timeout.
func NewHTTPGateway(cfg HTTPGatewayConfig, client *http.Client) (*HTTPGateway, error) {
	if fe := cfg.Validate(); len(fe) > 0 {
		return nil, fmt.Errorf("notify: sms.http: %w", fieldErrors(fe))
	}
	g := &HTTPGateway{cfg: cfg, client: httpClient(client, cfg.timeout),
		secret: secretRef{fileField: "secret_file", envField: "secret_env", file: cfg.SecretFile, env: cfg.SecretEnv}}
	var err error
	if g.url, err = ParseGatewayTemplate("url", cfg.URL); err != nil {
		return nil, fmt.Errorf("notify: sms.http.url: %w", err)
	}
	if cfg.BodyTemplate != "" {
		if g.body, err = ParseGatewayTemplate("body_template", cfg.BodyTemplate); err != nil {
			return nil, fmt.Errorf("notify: sms.http.body_template: %w", err)
		}
	}
	for i, h := range cfg.Headers {
		gh := gatewayHeader{name: h.Name, value: h.Value}
		if h.Value == "" {
			gh.ref = secretRef{fileField: fmt.Sprintf("headers[%d].value_file", i), envField: fmt.Sprintf("headers[%d].value_env", i),
				file: h.ValueFile, env: h.ValueEnv}
		}
		g.headers = append(g.headers, gh)
	}
	if _, err := g.prepare(context.Background(), SMS{To: sampleGatewayData.To, Body: "x"}); err != nil {
		return nil, fmt.Errorf("notify: sms.http: %w", err)
	}
	return g, nil
}

// prepare builds the request for m.
func (g *HTTPGateway) prepare(ctx context.Context, m SMS) (*http.Request, error) {
	data := GatewayData{To: m.To, Body: m.Body, Incident: m.Incident, Key: m.Key}
	if g.secret.set() {
		s, err := g.secret.read()
		if err != nil {
			return nil, err
		}
		data.Secret = s
	}
	var u bytes.Buffer
	if err := g.url.Execute(&u, data); err != nil {
		return nil, Permanent(fmt.Errorf("url template: %w", err))
	}
	if _, err := url.Parse(u.String()); err != nil {
		// The parse error quotes the URL, which may hold the secret.
		return nil, Permanent(errors.New("url template: the result is not a URL"))
	}
	var body bytes.Buffer
	if g.body != nil {
		if err := g.body.Execute(&limitedWriter{w: &body, n: maxTemplateLen * 4}, data); err != nil {
			return nil, Permanent(fmt.Errorf("body template: %w", err))
		}
	}
	req, err := http.NewRequestWithContext(ctx, g.cfg.Method, u.String(), bytes.NewReader(body.Bytes()))
	if err != nil {
		return nil, Permanent(errors.New("url template: the result is not a URL to send to"))
	}
	if g.body != nil {
		req.Header.Set("Content-Type", g.cfg.ContentType)
	}
	if m.Key != "" {
		req.Header.Set("Idempotency-Key", m.Key)
	}
	for _, h := range g.headers {
		v := h.value
		if v == "" {
			s, err := h.ref.read()
			if err != nil {
				return nil, err
			}
			v = s
		}
		req.Header.Set(h.name, v)
	}
	return req, nil
}

// SendSMS sends one message through the gateway. The gateway's answer is kept as the reference
// when it is short (many return a message id as the body).
func (g *HTTPGateway) SendSMS(ctx context.Context, m SMS) (string, error) {
	req, err := g.prepare(ctx, m)
	if err != nil {
		return "", fmt.Errorf("sms gateway: %w", err)
	}
	resp, body, err := doHTTP(g.client, req, "sms gateway")
	if err != nil {
		return "", err
	}
	if !g.cfg.success.has(resp.StatusCode) {
		return "", httpStatusError(resp, fmt.Errorf("sms gateway %s: HTTP %d: %s", redactURL(req.URL.String()), resp.StatusCode, snippet(body)))
	}
	ref := oneLine(string(body))
	if len(ref) > 100 {
		ref = ""
	}
	return ref, nil
}
