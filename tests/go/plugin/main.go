// A plugin written with HashiCorp's go-plugin (gRPC flavour) and nothing of Drover's but the
// magic cookie: Drover's plugin host must complete the handshake and the health check with it,
// then report that it does not serve Drover's services. The benchmark launches it too.
package main

import (
	"context"
	"os"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// The cookie documented in Drover's plugin SDK (drover_plugin_sdk::MAGIC_COOKIE_VALUE).
const cookieKey = "DROVER_PLUGIN_MAGIC_COOKIE"
const cookieValue = "5e3f1c0a9b7d4e2f8a6c1b3d5f7e9a0c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f"

// greeter registers no service of its own: go-plugin's server adds grpc.health.v1 and the
// controller.
type greeter struct {
	plugin.NetRPCUnsupportedPlugin
}

func (greeter) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }

func (greeter) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, nil
}

func main() {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "go-greeter",
		Level:      hclog.Trace,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	logger.Info("go plugin starting", "answer", 42, "pid", os.Getpid())
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  1,
			MagicCookieKey:   cookieKey,
			MagicCookieValue: cookieValue,
		},
		Plugins:    plugin.PluginSet{"greeter": greeter{}},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger:     logger,
	})
}
