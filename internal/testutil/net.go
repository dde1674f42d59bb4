package testutil

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address, host:port, whose port was free a
// moment ago; an error fails the test.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := FindFreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// FindFreeAddr is FreeAddr for code with no test at hand (work shared by
// tests through a sync.Once): it returns the error.
func FindFreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
