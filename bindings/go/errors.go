package aioloop

/*
#include <aioloop.h>
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// Errno is a libaioloop error code, exactly as the C library returns it: a negative
// number. Codes in -4095..-1 are -errno (Errno(-syscall.ECONNRESET) is ECONNRESET);
// library codes (ErrClosed, ErrState, ...) are -30000 and below and never change.
//
// errors.Is understands the common conditions:
//
//	errors.Is(err, syscall.ECONNRESET)     // any -errno code against its syscall.Errno
//	errors.Is(err, os.ErrDeadlineExceeded) // ETIMEDOUT (also context.DeadlineExceeded)
//	errors.Is(err, context.Canceled)       // ECANCELED (also ErrCanceled)
//	errors.Is(err, net.ErrClosed)          // ErrClosed
//	errors.Is(err, os.ErrPermission)       // EPERM, EACCES (as syscall.Errno does)
type Errno int

// Library error codes (fixed forever) and the system codes the binding itself names.
const (
	ErrClosed   Errno = C.AIOL_ECLOSED    // object is closed
	ErrState    Errno = C.AIOL_ESTATE     // operation not allowed in this state
	ErrThread   Errno = C.AIOL_ETHREAD    // called from a thread that does not own the loop
	ErrTLS      Errno = C.AIOL_ETLS       // TLS error
	ErrAINoName Errno = C.AIOL_EAI_NONAME // host name not known
	ErrAIAgain  Errno = C.AIOL_EAI_AGAIN  // temporary failure in name resolution
	ErrAIFail   Errno = C.AIOL_EAI_FAIL   // non-recoverable failure in name resolution
	ErrCanceled Errno = -Errno(syscall.ECANCELED)
	ErrTimedOut Errno = -Errno(syscall.ETIMEDOUT)
	ErrInvalid  Errno = -Errno(syscall.EINVAL)
	ErrBusy     Errno = -Errno(syscall.EBUSY)
	ErrNotSupp  Errno = -Errno(syscall.EOPNOTSUPP)
	errnoMaxSys Errno = -4095
)

// Error returns the library's message for the code (aiol_strerror).
func (e Errno) Error() string { return C.GoString(C.aiol_strerror(C.int(e))) }

// Name returns the code's name, such as "AIOL_ECLOSED" or "ECONNRESET" (aiol_err_name).
func (e Errno) Name() string { return C.GoString(C.aiol_err_name(C.int(e))) }

// Syscall returns the system error for a -errno code, and false for library codes.
func (e Errno) Syscall() (syscall.Errno, bool) {
	if e < 0 && e >= errnoMaxSys {
		return syscall.Errno(-e), true
	}
	return 0, false
}

// Timeout reports whether the code is ETIMEDOUT (net.Error style).
func (e Errno) Timeout() bool { return e == ErrTimedOut }

// Is makes errors.Is match the conditions listed on Errno.
func (e Errno) Is(target error) bool {
	switch target {
	case os.ErrDeadlineExceeded, context.DeadlineExceeded:
		return e == ErrTimedOut
	case context.Canceled:
		return e == ErrCanceled
	case net.ErrClosed:
		return e == ErrClosed
	}
	if se, ok := e.Syscall(); ok {
		if t, ok := target.(syscall.Errno); ok {
			return se == t
		}
		return se.Is(target)
	}
	return false
}

// errorOf turns a C return code into an error (nil for codes >= 0).
func errorOf(rc C.int) error {
	if rc >= 0 {
		return nil
	}
	return Errno(rc)
}

// PanicError is what Run (or RunOnce, Close) returns when a callback panicked. The panic
// was recovered at the trampoline, so it never crossed the C library; the connection the
// callback belonged to (if any) was aborted and the loop stopped.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack (runtime/debug.Stack)
}

func (p *PanicError) Error() string {
	return fmt.Sprintf("aioloop: panic in callback: %v", p.Value)
}

// Unwrap returns the panic value if it is an error.
func (p *PanicError) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}

var errNilFunc = errors.New("aioloop: nil function")
