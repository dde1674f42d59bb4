//go:build !linux

package fakeupstream

import "time"

// after returns a channel closed at due.
func after(due time.Time) <-chan struct{} { return timerAfter(due) }
