// Package demo runs the custody-to-court pathway end to end through the broker's HTTP API:
// a person arrives in custody, the custody HCP records clinical entries, L&D screens them
// and refers them to probation, probation works the referral, L&D reports to the court,
// and on release the GP gets the episode back. Each step is made by the agency's own
// client; the timeline shows what was stored, what the routes delivered to which agency
// and why, and what consent and the sharing rules withheld.
//
// Run starts everything in-process (a broker on a temporary embedded store and one small
// receiver per agency); Story runs the same pathway against nodes started elsewhere, as the
// system tests do.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/adapters/sink"
	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/config"
)

// Options tune Run. Zero values take the defaults.
type Options struct {
	// Wait bounds each wait for a step's deliveries (default 20 s).
	Wait time.Duration
	// Logger receives the broker's own log (default: none).
	Logger *zap.Logger
}

// Run starts a broker on a temporary embedded store with the demo agency configuration,
// its endpoints pointed at in-process receivers, runs the pathway and removes it all again.
func Run(ctx context.Context, o Options) (*Timeline, error) {
	ip, err := startInProcess(ctx, o)
	if err != nil {
		return nil, err
	}
	defer ip.close()
	return Story(ctx, ip.env)
}

// inProcess is a broker node serving on a loopback port, its receivers and its directory.
type inProcess struct {
	env     Env
	closers []func()
}

func (ip *inProcess) close() {
	for i := len(ip.closers) - 1; i >= 0; i-- {
		ip.closers[i]()
	}
}

func startInProcess(ctx context.Context, o Options) (ip *inProcess, err error) {
	ip = &inProcess{}
	defer func() {
		if err != nil {
			ip.close()
		}
	}()
	dir, err := os.MkdirTemp("", "hjbroker-demo-")
	if err != nil {
		return nil, fmt.Errorf("creating the demo's temporary directory: %w", err)
	}
	ip.closers = append(ip.closers, func() { os.RemoveAll(dir) })

	base, err := config.Demo()
	if err != nil {
		return nil, err
	}
	sp, err := StartSpine()
	if err != nil {
		return nil, err
	}
	ip.closers = append(ip.closers, func() { sp.Close() }) //nolint:errcheck // the demo is over
	AlignGP(base)
	receivers, err := StartReceivers(base)
	if err != nil {
		return nil, err
	}
	ip.closers = append(ip.closers, func() {
		for _, s := range receivers {
			s.Close() //nolint:errcheck // the demo is over
		}
	})
	cfgPath := filepath.Join(dir, "agencies.json")
	if err := WriteConfig(cfgPath, base, receivers); err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the demo broker: %w", err)
	}
	root := "http://" + ln.Addr().String()
	logger := o.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	node, err := app.New(ctx, app.Config{
		Addr:       ln.Addr().String(),
		DataDir:    filepath.Join(dir, "data"),
		ConfigFile: cfgPath,
		PublicBase: root + "/fhir",
		Logger:     logger,
		Spine:      sp.Options,
		// Receivers are local and answer at once; short retries keep a hiccup from
		// stalling the story.
		Routing: app.RoutingOptions{RetryBase: 100 * time.Millisecond, RetryMax: time.Second, Poll: 10 * time.Millisecond},
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("starting the demo broker: %w", err)
	}
	ip.closers = append(ip.closers, func() { node.Close() }) //nolint:errcheck // the demo is over
	srv := &http.Server{Handler: node.Handler, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with ErrServerClosed at Shutdown
	ip.closers = append(ip.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx) //nolint:errcheck // the demo is over
	})
	node.Start(ctx)
	ip.env = Env{Nodes: []string{root}, Token: node.Token, Config: node.Config, Receivers: receivers, Wait: o.Wait, Spine: sp.URL}
	return ip, nil
}

// StartReceivers starts one receiver per endpoint of the configuration, keyed by endpoint
// id. On error the ones started are closed again.
func StartReceivers(cfg *config.Config) (map[string]*sink.Sink, error) {
	out := map[string]*sink.Sink{}
	for _, a := range cfg.Agencies {
		for _, ep := range a.Endpoints {
			s, err := sink.Start(a.Name)
			if err != nil {
				for _, o := range out {
					o.Close() //nolint:errcheck // reporting the first error
				}
				return nil, err
			}
			out[ep.ID] = s
		}
	}
	return out, nil
}

// WriteConfig writes cfg to path with each endpoint's url replaced by its receiver's base,
// as a configuration file the broker reads (JSON, which is YAML). Endpoints without a
// receiver keep their url.
func WriteConfig(path string, cfg *config.Config, receivers map[string]*sink.Sink) error {
	c := *cfg
	c.Agencies = append([]config.Agency(nil), cfg.Agencies...)
	for i := range c.Agencies {
		eps := append([]config.Endpoint(nil), c.Agencies[i].Endpoints...)
		for j := range eps {
			if s, ok := receivers[eps[j].ID]; ok {
				eps[j].URL = s.Base()
			}
		}
		c.Agencies[i].Endpoints = eps
	}
	raw, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the demo configuration: %w", err)
	}
	if _, err := config.Parse(raw, path); err != nil {
		return fmt.Errorf("the demo configuration pointed at the receivers does not load: %w", err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return fmt.Errorf("writing the demo configuration: %w", err)
	}
	return nil
}
