package main

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// arrival is a notification as the mail sink saw it.
type arrival struct {
	receiver string // the local part of the recipient: which system sent it
	host     string
	firing   bool
	at       time.Time // end of DATA: the server has the whole message and is about to answer 250
}

// hostRe finds the synthetic host a notification is about, in its subject.
var hostRe = regexp.MustCompile(`\bbrk[0-9]{3,6}\b`)

// parseMail reads a received message: which host it is about (from the Subject, decoded) and
// whether it says firing or resolved. Both systems' subjects carry the host name and the status
// word: the hub's "[FIRING:CRITICAL] bench/brk001 ...", Alertmanager's "firing brk001" (our
// template).
func parseMail(raw []byte) (host string, firing bool, err error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return "", false, err
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return "", false, err
	}
	host = hostRe.FindString(subject)
	if host == "" {
		return "", false, errors.New("no benchmark host in the subject")
	}
	s := strings.ToLower(subject)
	firing = strings.Contains(s, "firing") && !strings.Contains(s, "resolved")
	return host, firing, nil
}

// sink is an SMTP server that notes when each notification arrived, by receiver and host.
type sink struct {
	srv  *smtp.Server
	addr string

	mu      sync.Mutex
	first   map[[2]string]time.Time // (receiver, host) -> first firing mail
	waiters map[[2]string]chan struct{}
	all     []arrival
	bad     int // messages that were not about a benchmark host
}

func newSink() (*sink, error) {
	s := &sink{first: map[[2]string]time.Time{}, waiters: map[[2]string]chan struct{}{}}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{sink: s}, nil }))
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().String()
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) Close() error { return s.srv.Close() }

func (s *sink) waiter(k [2]string) chan struct{} {
	c, ok := s.waiters[k]
	if !ok {
		c = make(chan struct{})
		s.waiters[k] = c
	}
	return c
}

func (s *sink) received(rcpts []string, raw []byte, at time.Time) {
	host, firing, err := parseMail(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.bad++
		return
	}
	for _, r := range rcpts {
		recv, _, _ := strings.Cut(strings.ToLower(r), "@")
		s.all = append(s.all, arrival{receiver: recv, host: host, firing: firing, at: at})
		k := [2]string{recv, host}
		if _, seen := s.first[k]; firing && !seen {
			s.first[k] = at
			close(s.waiter(k))
		}
	}
}

// wait returns when receiver's first firing mail about host arrived, or false at the deadline.
func (s *sink) wait(receiver, host string, deadline time.Time) (time.Time, bool) {
	k := [2]string{receiver, host}
	s.mu.Lock()
	c := s.waiter(k)
	s.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.first[k], true
	case <-t.C:
		return time.Time{}, false
	}
}

// counts returns how many messages each receiver sent, firing and resolved, and how many were
// not about a benchmark host.
func (s *sink) counts() (firing, resolved map[string]int, bad int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	firing, resolved = map[string]int{}, map[string]int{}
	for _, a := range s.all {
		if a.firing {
			firing[a.receiver]++
		} else {
			resolved[a.receiver]++
		}
	}
	return firing, resolved, s.bad
}

type session struct {
	sink  *sink
	rcpts []string
}

func (s *session) Mail(string, *smtp.MailOptions) error { return nil }

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.sink.received(s.rcpts, raw, time.Now())
	return nil
}

func (s *session) Reset()        { s.rcpts = nil }
func (s *session) Logout() error { return nil }
