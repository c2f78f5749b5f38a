package probe

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
)

// queryRunner plays a tcp module's query_response script as blackbox does: for each step,
// read lines until one matches expect (its groups can be used in send as ${1}), send the
// send line with a newline, then upgrade to TLS when starttls.
type queryRunner struct {
	steps    []QueryResponse
	startTLS func(net.Conn) (net.Conn, error)
	logger   *slog.Logger
}

// queryError is a failed step with the reason it stands for.
type queryError struct {
	step   int
	reason Reason
	err    error
}

func (e *queryError) Error() string { return fmt.Sprintf("query_response[%d]: %v", e.step, e.err) }
func (e *queryError) Unwrap() error { return e.err }

// maxLine bounds a line the script reads, so that a peer streaming without newlines cannot
// make the probe buffer without end.
const maxLine = 64 << 10

func (q *queryRunner) run(conn net.Conn) error {
	sc := bufio.NewScanner(conn)
	sc.Buffer(nil, maxLine)
	for i, step := range q.steps {
		send := step.Send
		if step.Expect != "" {
			re, err := compileRegexp(step.Expect)
			if err != nil {
				return &queryError{step: i, reason: ReasonConfig, err: err}
			}
			var match []int
			for sc.Scan() {
				if match = re.FindSubmatchIndex(sc.Bytes()); match != nil {
					break
				}
			}
			if match == nil {
				if err := sc.Err(); err != nil {
					return fmt.Errorf("query_response[%d]: reading: %w", i, err)
				}
				return &queryError{step: i, reason: ReasonContent, err: fmt.Errorf("no line matched %q before the connection ended", step.Expect)}
			}
			q.logger.Debug("query_response matched", "step", i, "expect", step.Expect)
			if send != "" {
				send = string(re.Expand(nil, []byte(send), sc.Bytes(), match))
			}
		}
		if send != "" {
			if _, err := io.WriteString(conn, send+"\n"); err != nil {
				return fmt.Errorf("query_response[%d]: sending: %w", i, err)
			}
		}
		if step.StartTLS {
			tc, err := q.startTLS(conn)
			if err != nil {
				return &queryError{step: i, reason: ReasonTLS, err: err}
			}
			conn = tc
			sc = bufio.NewScanner(conn)
			sc.Buffer(nil, maxLine)
		}
	}
	return nil
}
