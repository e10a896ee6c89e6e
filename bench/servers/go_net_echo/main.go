// go_net_echo: Go's standard net package echo server, the yardstick for the Go binding:
// one goroutine per connection, read into a 256 KiB buffer, write it back. With
// --tls-cert and --tls-key it serves TLS through Go's crypto/tls (its defaults: TLS 1.3).
//
//	go_net_echo --host 127.0.0.1 --port P [--tls-cert CERT.pem --tls-key KEY.pem]
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port (0: ephemeral)")
	certFile := flag.String("tls-cert", "", "serve TLS with this certificate (PEM)")
	keyFile := flag.String("tls-key", "", "and this private key (PEM)")
	flag.Parse()
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err == nil && *certFile != "" {
		var cert tls.Certificate
		if cert, err = tls.LoadX509KeyPair(*certFile, *keyFile); err == nil {
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_net_echo:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			buf := make([]byte, 256*1024)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}(c)
	}
}
