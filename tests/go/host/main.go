// A host written with HashiCorp's go-plugin (gRPC flavour), as a third party would write one.
//
//	host check [-proto N] [-expect-log TEXT] CMD [ARGS...]
//	    launches CMD as a plugin, completes the handshake, pings it (grpc.health.v1, service
//	    "plugin"), stops it (Kill: the controller's Shutdown, a force kill after 2 s) and exits
//	    0 only when all of that worked: the plugin exited by itself, cleanly, and (with
//	    -expect-log) one of its stderr log lines carrying TEXT reached this host's logger.
//	host bench N CMD [ARGS...]
//	    N times: launch to ready (Start, handshake, dial, Ping), then Kill. Prints one line
//	    "LAUNCH_NS <nanoseconds>" per launch.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

const cookieKey = "DROVER_PLUGIN_MAGIC_COOKIE"
const cookieValue = "5e3f1c0a9b7d4e2f8a6c1b3d5f7e9a0c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f"

type anyPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (anyPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }

func (anyPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return c, nil
}

// syncBuffer collects the host's own log output (go-plugin logs what it does there).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newClient(proto int, logOut io.Writer, level hclog.Level, args []string) *plugin.Client {
	return plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  uint(proto),
			MagicCookieKey:   cookieKey,
			MagicCookieValue: cookieValue,
		},
		Plugins:          plugin.PluginSet{"driver": anyPlugin{}},
		Cmd:              exec.Command(args[0], args[1:]...),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     30 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   "go-host",
			Level:  level,
			Output: logOut,
		}),
	})
}

func fail(format string, a ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", a...)
	os.Exit(1)
}

func check(argv []string) {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	proto := fs.Int("proto", 1, "the application protocol version to offer")
	expectLog := fs.String("expect-log", "", "text one forwarded plugin log line must carry")
	fs.Parse(argv)
	args := fs.Args()
	if len(args) == 0 {
		fail("no plugin command given")
	}
	logs := &syncBuffer{}
	client := newClient(*proto, io.MultiWriter(os.Stderr, logs), hclog.Trace, args)
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		fail("handshake: %v", err)
	}
	fmt.Printf("HANDSHAKE OK protocol=%s version=%d\n", client.Protocol(), client.NegotiatedVersion())
	if err := rpc.Ping(); err != nil {
		client.Kill()
		fail("ping (grpc.health.v1 service \"plugin\"): %v", err)
	}
	fmt.Println("PING OK")
	if _, err := rpc.Dispense("driver"); err != nil {
		client.Kill()
		fail("dispense: %v", err)
	}
	client.Kill()
	if !client.Exited() {
		fail("the plugin still runs after Kill")
	}
	text := logs.String()
	if strings.Contains(text, "plugin failed to exit gracefully") {
		fail("the plugin did not exit after the controller's Shutdown; it was force-killed")
	}
	exitLine := ""
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "plugin process exited") {
			exitLine = l
		}
	}
	if exitLine == "" {
		fail("go-plugin did not report the plugin's exit")
	}
	if strings.Contains(exitLine, "error=") {
		fail("the plugin exited unsuccessfully: %s", exitLine)
	}
	fmt.Println("SHUTDOWN OK")
	if *expectLog != "" {
		found := false
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, *expectLog) && !strings.Contains(l, "[DEBUG]") {
				found = true
			}
		}
		if !found {
			fail("no forwarded plugin log line above DEBUG carries %q", *expectLog)
		}
		fmt.Println("LOG OK")
	}
	fmt.Println("OK")
}

func bench(argv []string) {
	if len(argv) < 2 {
		fail("usage: host bench N CMD [ARGS...]")
	}
	n, err := strconv.Atoi(argv[0])
	if err != nil {
		fail("bad iteration count %q", argv[0])
	}
	for i := 0; i < n; i++ {
		client := newClient(1, os.Stderr, hclog.Warn, argv[1:])
		start := time.Now()
		rpc, err := client.Client()
		if err != nil {
			client.Kill()
			fail("launch %d: %v", i, err)
		}
		if err := rpc.Ping(); err != nil {
			client.Kill()
			fail("launch %d: ping: %v", i, err)
		}
		elapsed := time.Since(start)
		client.Kill()
		fmt.Printf("LAUNCH_NS %d\n", elapsed.Nanoseconds())
	}
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: host check|bench ...")
	}
	switch os.Args[1] {
	case "check":
		check(os.Args[2:])
	case "bench":
		bench(os.Args[2:])
	default:
		fail("unknown mode %q", os.Args[1])
	}
}
