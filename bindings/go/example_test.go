package aioloop_test

import (
	"fmt"
	"net"

	aioloop "github.com/libaioloop/aioloop/bindings/go"
)

// echo writes back what it reads.
type echo struct{ aioloop.BaseProtocol }

func (echo) DataReceived(t *aioloop.Transport, data []byte) { t.Write(data) }

// client sends a greeting, half-closes, and prints the reply.
type client struct {
	aioloop.BaseProtocol
	loop  *aioloop.Loop
	reply []byte
}

func (c *client) ConnectionMade(t *aioloop.Transport) {
	t.WriteString("hello, loop")
	t.WriteEOF()
}

func (c *client) DataReceived(t *aioloop.Transport, data []byte) {
	c.reply = append(c.reply, data...) // data is only valid during the call: copy it
}

func (c *client) ConnectionLost(t *aioloop.Transport, err error) {
	fmt.Printf("%s (err=%v)\n", c.reply, err)
	c.loop.Stop()
}

func Example() {
	loop, err := aioloop.New()
	if err != nil {
		panic(err)
	}
	defer loop.Close()

	srv, err := loop.Listen(aioloop.ServerConfig{Host: "127.0.0.1"},
		func() aioloop.Protocol { return echo{} })
	if err != nil {
		panic(err)
	}
	port := srv.Addrs()[0].(*net.TCPAddr).Port

	_, err = loop.Dial(aioloop.DialConfig{Host: "127.0.0.1", Port: port},
		&client{loop: loop}, func(t *aioloop.Transport, err error) {
			if err != nil {
				fmt.Println("dial:", err)
				loop.Stop()
			}
		})
	if err != nil {
		panic(err)
	}
	if err := loop.Run(); err != nil { // returns on Stop
		panic(err)
	}
	// Output: hello, loop (err=<nil>)
}
