package aioloop

/*
#include <sys/socket.h>
#include <netinet/in.h>
*/
import "C"

import (
	"encoding/binary"
	"net"
	"strconv"
	"unsafe"
)

// sockaddrToAddr converts a Linux sockaddr to *net.TCPAddr or *net.UnixAddr (nil for
// other families).
func sockaddrToAddr(ss *C.struct_sockaddr_storage, n C.socklen_t) net.Addr {
	size := int(n)
	if size > int(unsafe.Sizeof(*ss)) {
		size = int(unsafe.Sizeof(*ss))
	}
	if size < 2 {
		return nil
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(ss)), size)
	switch int(ss.ss_family) {
	case C.AF_INET:
		if size < 8 {
			return nil
		}
		ip := make(net.IP, 4)
		copy(ip, b[4:8])
		return &net.TCPAddr{IP: ip, Port: int(binary.BigEndian.Uint16(b[2:4]))}
	case C.AF_INET6:
		if size < 28 {
			return nil
		}
		ip := make(net.IP, 16)
		copy(ip, b[8:24])
		a := &net.TCPAddr{IP: ip, Port: int(binary.BigEndian.Uint16(b[2:4]))}
		if scope := binary.NativeEndian.Uint32(b[24:28]); scope != 0 {
			if ifi, err := net.InterfaceByIndex(int(scope)); err == nil {
				a.Zone = ifi.Name
			} else {
				a.Zone = strconv.Itoa(int(scope))
			}
		}
		return a
	case C.AF_UNIX:
		path := b[2:]
		if len(path) > 0 && path[0] == 0 { // abstract socket
			if len(path) == 1 {
				return &net.UnixAddr{Net: "unix"} // unnamed
			}
			return &net.UnixAddr{Name: "@" + string(path[1:]), Net: "unix"}
		}
		for i, c := range path {
			if c == 0 {
				path = path[:i]
				break
			}
		}
		return &net.UnixAddr{Name: string(path), Net: "unix"}
	}
	return nil
}
