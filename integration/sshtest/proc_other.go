//go:build !linux

package sshtest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

// connections is empty off Linux: sshd's per-connection processes are
// left to end with their connections.
type connections []int

func openConnections(listener int) connections { return nil }
func (c connections) kill()                    {}
func (c connections) close()                   {}
