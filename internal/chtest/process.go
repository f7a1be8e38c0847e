package chtest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Command is a child process for StartProcess.
type Command struct {
	Argv []string
	// Dir is the working directory.
	Dir string
	// Env is added to the test binary's environment.
	Env []string
	// Out receives stdout and stderr; it is closed once the process exits.
	Out *os.File
	// MaxLifetime kills the process after this long whatever happens, so a
	// hung test binary cannot keep it forever.
	MaxLifetime time.Duration
}

// Process is a child bound to the test binary: it runs in a process group
// of its own, gets SIGKILL when the binary dies (Pdeathsig) and after its
// maximum lifetime. ClickHouse servers and the cluster's ZooKeeper are run
// this way, so a killed or hung test run cannot leave them behind.
type Process struct {
	pid      int
	stop     chan struct{} // closed to ask the owner goroutine to kill the process
	exited   chan struct{} // closed when the process has been reaped
	waitErr  error
	stopOnce sync.Once
}

// StartProcess starts c and returns once the process exists.
func StartProcess(c Command) (*Process, error) {
	if len(c.Argv) == 0 {
		return nil, fmt.Errorf("chtest: start process: empty command")
	}
	if c.MaxLifetime <= 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	p := &Process{stop: make(chan struct{}), exited: make(chan struct{})}
	started := make(chan error, 1)
	go p.own(c, started)
	if err := <-started; err != nil {
		return nil, fmt.Errorf("chtest: start %s: %w", c.Argv[0], err)
	}
	return p, nil
}

// own starts the process and reaps it on a goroutine locked to its OS
// thread: Pdeathsig fires when the thread that forked the child exits, so
// that thread must live exactly as long as the child is wanted.
func (p *Process) own(c Command, started chan<- error) {
	runtime.LockOSThread()
	// Never unlocked: when this goroutine returns, its thread exits with it.
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	if c.Out != nil {
		cmd.Stdout, cmd.Stderr = c.Out, c.Out
		defer c.Out.Close()
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	p.pid = cmd.Process.Pid
	started <- nil

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	killTimer := time.NewTimer(c.MaxLifetime)
	defer killTimer.Stop()
	select {
	case err := <-waited:
		p.waitErr = err
	case <-p.stop:
		cmd.Process.Kill()
		p.waitErr = <-waited
	case <-killTimer.C:
		cmd.Process.Kill()
		p.waitErr = fmt.Errorf("killed after max lifetime %s: %w", c.MaxLifetime, <-waited)
	}
	close(p.exited)
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.pid }

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the process ended (cmd.Wait's error); valid once Exited is closed.
func (p *Process) Err() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
		return nil
	}
}

// Kill sends SIGKILL and waits until the process has been reaped.
// Calling it again, or after the process exited, does nothing.
func (p *Process) Kill() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.exited
}
