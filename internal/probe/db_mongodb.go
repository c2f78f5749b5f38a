//go:build !nomongodb

package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"

	"github.com/serversage/sage/internal/config"
)

// MongoDB through the official driver, connected directly to the one server named (no replica
// set discovery), with a pool of one connection. The driver watches the server on a connection
// of its own besides the one that logs in and runs the command: "connect" is the first of them
// (TCP and TLS), "auth" lasts until the command's connection has logged in, "query" is the
// command. TLS by default is none. The command runs in db.database (default admin), which is
// also where the user is authenticated.
func init() {
	registerDB(&dbKind{
		name:        "mongodb",
		defaultPort: 27017,
		run:         runMongo,
		authErr: func(err error) bool {
			var ae *auth.Error
			var ce mongo.CommandError
			// 18 AuthenticationFailed.
			return errors.As(err, &ae) || (errors.As(err, &ce) && ce.Code == 18)
		},
		serverErr: func(err error) bool {
			var se mongo.ServerError
			return errors.As(err, &se)
		},
		validate: func(m *DBModule, path string) []config.FieldError {
			if m.Query == "" {
				return nil
			}
			if _, err := mongoCommand(m.Query); err != nil {
				return []config.FieldError{config.Errorf(path+".query", "%v", err)}
			}
			return nil
		},
	})
}

// mongoCommand reads a command document in extended JSON; its first key names the command.
func mongoCommand(q string) (bson.D, error) {
	if q == "" {
		return bson.D{{Key: "ping", Value: 1}}, nil
	}
	var d bson.D
	if err := bson.UnmarshalExtJSON([]byte(q), false, &d); err != nil {
		return nil, fmt.Errorf("not a command document in extended JSON: %w", err)
	}
	if len(d) == 0 {
		return nil, errors.New("empty command document")
	}
	return d, nil
}

type mongoDialer struct{ s *dbSession }

func (d mongoDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.s.dialContext(ctx, network, addr, d.s.dialTLS)
}

func runMongo(ctx context.Context, s *dbSession) error {
	cmd, err := mongoCommand(s.query)
	if err != nil {
		return dbConfigErr(err)
	}
	if mode := s.tlsMode(dbTLSDisable); mode != dbTLSDisable {
		// The dialer does the handshake, so that it counts in "connect" like the other kinds'.
		if s.dialTLS, err = s.tlsConfig(mode); err != nil {
			return dbConfigErr(err)
		}
	}
	db := s.database
	if db == "" {
		db = "admin"
	}
	// The driver's monitor keeps retrying a server it cannot reach until server selection
	// gives up; the probe stops at the first failed check instead, with its cause.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cmdName := cmd[0].Key
	opts := options.Client().
		SetHosts([]string{s.driverAddr}).
		SetDirect(true).
		SetDialer(mongoDialer{s: s}).
		SetAppName("serversage-probe").
		SetMaxPoolSize(1).
		SetMinPoolSize(0).
		SetRetryReads(false).
		SetRetryWrites(false).
		SetServerMonitoringMode(options.ServerMonitoringModePoll).
		SetServerSelectionTimeout(s.remaining()).
		SetConnectTimeout(s.remaining()).
		SetServerMonitor(&event.ServerMonitor{
			ServerHeartbeatFailed: func(e *event.ServerHeartbeatFailedEvent) { cancel(e.Failure) },
		}).
		SetPoolMonitor(&event.PoolMonitor{Event: func(e *event.PoolEvent) {
			if e.Type == event.ConnectionReady {
				s.authed()
			}
		}}).
		SetMonitor(&event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
			if e.CommandName == cmdName {
				s.queryStart()
			}
		}})
	if s.user != "" {
		opts.SetAuth(options.Credential{Username: s.user, Password: s.password, PasswordSet: s.password != "", AuthSource: db})
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return dbConfigErr(fmt.Errorf("mongodb configuration: %w", err))
	}
	defer func() {
		// Closing the connections first leaves Disconnect nothing to wait for.
		s.closeAll()
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 100*time.Millisecond)
		defer dcancel()
		_ = client.Disconnect(dctx)
	}()
	err = client.Database(db).RunCommand(ctx, cmd).Err()
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
			return cause
		}
		return err
	}
	s.done()
	raw, err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Raw()
	if err == nil {
		if v, ok := raw.Lookup("version").StringValueOK(); ok {
			s.setVersion(dbVersionLabel(v))
		}
	}
	return nil
}
