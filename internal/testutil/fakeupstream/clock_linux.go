//go:build linux

package fakeupstream

import (
	"container/heap"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// The fake's waits (queue, prefill, the tokens) end on a timerfd read
// through the runtime's network poller, not on Go timers. With Go timers,
// a process that sleeps in the poller wakes on whole milliseconds of its
// poll timeout, so a wait ends up to a millisecond late depending on when
// the process last woke: an unrelated request (a /metrics scrape from the
// capture proxy) arriving during a wait would make the fake's tokens late,
// which a server whose tokens come from the GPU does not suffer. A timerfd
// makes the poller wake when the wait is due.

// clock is a timerfd armed for the earliest pending wait.
type clock struct {
	fd int
	f  *os.File

	mu    sync.Mutex
	waits waitHeap
}

type wait struct {
	due  time.Time
	done chan struct{}
}

type waitHeap []*wait

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h waitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *waitHeap) Push(x any)        { *h = append(*h, x.(*wait)) }
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	*h = old[:len(old)-1]
	return w
}

// theClock is the process's clock, nil if no timerfd could be made.
var theClock = sync.OnceValue(func() *clock {
	const clockMonotonic = 1
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return nil
	}
	c := &clock{fd: int(fd), f: os.NewFile(fd, "timerfd")}
	go c.loop()
	return c
})

// arm sets the timerfd to the earliest wait, or disarms it. c.mu is held.
func (c *clock) arm() error {
	var spec struct{ interval, value syscall.Timespec }
	if len(c.waits) > 0 {
		d := max(time.Until(c.waits[0].due), time.Nanosecond)
		spec.value = syscall.NsecToTimespec(d.Nanoseconds())
	}
	_, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, uintptr(c.fd), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func (c *clock) loop() {
	var buf [8]byte
	for {
		_, err := c.f.Read(buf[:])
		c.mu.Lock()
		now := time.Now()
		for len(c.waits) > 0 && (err != nil || !c.waits[0].due.After(now)) {
			close(heap.Pop(&c.waits).(*wait).done)
		}
		if err == nil {
			err = c.arm()
		}
		c.mu.Unlock()
		if err != nil {
			return // waits made from now on use timers
		}
	}
}

// after returns a channel closed at due.
func after(due time.Time) <-chan struct{} {
	c := theClock()
	if c != nil {
		c.mu.Lock()
		w := &wait{due: due, done: make(chan struct{})}
		heap.Push(&c.waits, w)
		err := error(nil)
		if c.waits[0] == w {
			err = c.arm()
		}
		c.mu.Unlock()
		if err == nil {
			return w.done
		}
	}
	return timerAfter(due)
}
