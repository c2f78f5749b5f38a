//go:build !noredis

package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/serversage/sage/internal/config"
)

// Redis (and Valkey, KeyDB) through go-redis with a pool of one connection, no retries, RESP2.
// The session set-up (HELLO, AUTH, SELECT) is "auth"; the command is PING unless db.query
// gives a command line. TLS by default is none. An answer of nil (GET of a missing key) is an
// answer: only an error reply fails the probe.
func init() {
	registerDB(&dbKind{
		name:        "redis",
		defaultPort: 6379,
		run:         runRedis,
		authErr: func(err error) bool {
			var re redis.Error
			if !errors.As(err, &re) {
				return false
			}
			msg := re.Error()
			for _, p := range []string{"WRONGPASS", "NOAUTH", "ERR invalid password", "ERR AUTH", "ERR Client sent AUTH", "ERR invalid username-password"} {
				if strings.HasPrefix(msg, p) {
					return true
				}
			}
			return false
		},
		serverErr: func(err error) bool {
			var re redis.Error
			return errors.As(err, &re)
		},
		validate: func(m *DBModule, path string) []config.FieldError {
			var errs []config.FieldError
			if m.Query != "" {
				if _, err := parseRedisCommand(m.Query); err != nil {
					errs = append(errs, config.Errorf(path+".query", "%v", err))
				}
			}
			if m.Database != "" {
				if n, err := strconv.Atoi(m.Database); err != nil || n < 0 {
					errs = append(errs, config.Errorf(path+".database", "%q: a redis database is a number", m.Database))
				}
			}
			if len(m.Params) > 0 {
				errs = append(errs, config.Errorf(path+".params", "redis takes no params"))
			}
			return errs
		},
	})
}

// go-redis logs dial failures itself, to standard error; the probe reports them as its result.
// The logger is the library's global one: this package is its only user in sage.
func init() { redis.SetLogger(redisLogger{}) }

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, "go-redis", "msg", fmt.Sprintf(format, v...))
}

func runRedis(ctx context.Context, s *dbSession) error {
	argv := []string{"PING"}
	if s.query != "" {
		var err error
		if argv, err = parseRedisCommand(s.query); err != nil {
			return dbConfigErr(err)
		}
	}
	db := 0
	if s.database != "" {
		n, err := strconv.Atoi(s.database)
		if err != nil || n < 0 {
			return dbConfigErr(fmt.Errorf("redis database %q is not a number", s.database))
		}
		db = n
	}
	if mode := s.tlsMode(dbTLSDisable); mode != dbTLSDisable {
		// go-redis leaves TLS to a custom dialer.
		var err error
		if s.dialTLS, err = s.tlsConfig(mode); err != nil {
			return dbConfigErr(err)
		}
	}
	left := s.remaining()
	c := redis.NewClient(&redis.Options{
		Addr: s.driverAddr,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return s.dialContext(ctx, network, addr, s.dialTLS)
		},
		OnConnect: func(context.Context, *redis.Conn) error { s.authed(); return nil },
		Protocol:  2,
		Username:  s.user,
		Password:  s.password,
		DB:        db,
		// One attempt of everything: a probe reports what happened, it does not try harder.
		MaxRetries:               -1,
		DialerRetries:            1,
		DialTimeout:              left,
		ReadTimeout:              left,
		WriteTimeout:             left,
		PoolTimeout:              left,
		ContextTimeoutEnabled:    true,
		PoolSize:                 1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer c.Close()
	args := make([]any, len(argv))
	for i, a := range argv {
		args[i] = a
	}
	cmd := redis.NewCmd(ctx, args...)
	_ = c.Process(ctx, cmd)
	if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	s.done()
	if info, err := c.Info(ctx, "server").Result(); err == nil {
		if v := redisInfoField(info, "redis_version"); v != "" {
			s.setVersion(dbVersionLabel(v))
		}
	}
	return nil
}

// redisInfoField finds "name:value" in INFO's answer.
func redisInfoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), name+":"); ok {
			return v
		}
	}
	return ""
}

// parseRedisCommand splits a command line into arguments as redis-cli does, simplified: words
// separated by blanks; a word may be "double quoted" (escapes \" \\ \n \r \t \xHH) or 'single
// quoted' (escape \' only); a closing quote must end the word.
func parseRedisCommand(line string) ([]string, error) {
	var args []string
	i := 0
	isBlank := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for {
		for i < len(line) && isBlank(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		var w strings.Builder
		switch q := line[i]; q {
		case '"', '\'':
			i++
			closed := false
			for i < len(line) {
				c := line[i]
				if c == q {
					closed = true
					i++
					break
				}
				if c == '\\' && i+1 < len(line) {
					n := line[i+1]
					switch {
					case q == '\'' && n == '\'':
						w.WriteByte('\'')
						i += 2
						continue
					case q == '"':
						switch n {
						case '"', '\\':
							w.WriteByte(n)
						case 'n':
							w.WriteByte('\n')
						case 'r':
							w.WriteByte('\r')
						case 't':
							w.WriteByte('\t')
						case 'x':
							if i+3 < len(line) {
								if b, err := strconv.ParseUint(line[i+2:i+4], 16, 8); err == nil {
									w.WriteByte(byte(b))
									i += 4
									continue
								}
							}
							return nil, fmt.Errorf("bad \\x escape at byte %d", i)
						default:
							w.WriteByte(n)
						}
						i += 2
						continue
					}
				}
				w.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("unclosed %c quote", q)
			}
			if i < len(line) && !isBlank(line[i]) {
				return nil, fmt.Errorf("closing quote must be followed by a blank, at byte %d", i)
			}
		default:
			for i < len(line) && !isBlank(line[i]) {
				if line[i] == '"' || line[i] == '\'' {
					return nil, fmt.Errorf("quote inside a word at byte %d", i)
				}
				w.WriteByte(line[i])
				i++
			}
		}
		args = append(args, w.String())
	}
	if len(args) == 0 {
		return nil, errors.New("empty command")
	}
	return args, nil
}
