//go:build unix

package peers

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts cmd in a process group of its own, and makes
// cancelling its context kill the whole group (pmacctd forks its plugins).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		killProcessGroup(cmd.Process.Pid)
		return nil
	}
}

// killProcessGroup kills what is left of the process group that pid led.
// The group is ours: it was created for the command we started.
func killProcessGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}
