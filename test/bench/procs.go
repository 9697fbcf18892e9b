package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// process is a binary the benchmark started: the manager or a token server.
type process struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	log     string
	exited  chan struct{}
}

// start runs binary with args, logging to dir/name.log. A non-empty cpu pins it
// to that core list with taskset and sets GOMAXPROCS to match.
func start(dir, name, cpu string, env []string, binary string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := pinned(cpu, binary, args...)
	cmd.Env = append(append(os.Environ(), env...), gomaxprocs(cpu)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	p := &process{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); logFile.Close(); close(p.exited) }()
	return p, nil
}

// pinned is binary args, under taskset when cpu is set (taskset execs, so the pid is the binary's).
func pinned(cpu, binary string, args ...string) *exec.Cmd {
	if cpu == "" {
		return exec.Command(binary, args...)
	}
	return exec.Command("taskset", append([]string{"-c", cpu, binary}, args...)...)
}

func gomaxprocs(cpu string) []string {
	if cpu == "" {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(len(strings.Split(cpu, ",")))}
}

// stop sends SIGTERM and waits; SIGKILL after 15 s.
func (p *process) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitReady polls url every 5 ms until it answers 200 and returns the time since
// the process started.
func (p *process) waitReady(ctx context.Context, url string, timeout time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !p.running() {
			return 0, fmt.Errorf("%s exited; see %s:\n%s", p.name, p.log, tail(p.log, 15))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.started), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("%s not ready after %s; see %s:\n%s", p.name, timeout, p.log, tail(p.log, 15))
}

// rssBytes is the process's resident set size (VmRSS).
func (p *process) rssBytes() (int64, error) {
	return procStatusKiB(p.cmd.Process.Pid, "VmRSS:")
}

func procStatusKiB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// cpuSeconds is the CPU time a process has used so far (processCPUSeconds),
// or 0 when it cannot be read (a process that has ended).
func cpuSeconds(pid int) float64 {
	seconds, _ := processCPUSeconds(pid)
	return seconds
}

// processCPUSeconds is the CPU time process pid has used, all its threads,
// ended ones included: the kernel's CPU clock of the process, counted in
// nanoseconds by the scheduler, where /proc/<pid>/stat counts clock ticks of
// 10 ms (fine for a whole load, not for a window of a second or two read to
// the per cent).
func processCPUSeconds(pid int) (float64, error) {
	var ts unix.Timespec
	// The clock of process pid: MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) in the kernel's posix-timers.h.
	if err := unix.ClockGettime(int32((^pid)<<3|2), &ts); err != nil {
		return 0, fmt.Errorf("the CPU clock of process %d: %w", pid, err)
	}
	return float64(ts.Nano()) / 1e9, nil
}

// childPIDs finds this process's children by command name (etcd and kube-apiserver,
// which envtest starts).
func childPIDs() map[string]int {
	found := map[string]int{}
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(string(data[closing+2:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(self) {
			found[string(data[open+1:closing])] = pid
		}
	}
	return found
}

// runChild runs `bench <kind>` pinned to cpu with job on stdin and decodes its result.
func runChild(ctx context.Context, kind, cpu string, job, result any) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	input, err := json.Marshal(job)
	if err != nil {
		return err
	}
	cmd := pinned(cpu, self, kind)
	cmd.Env = append(os.Environ(), gomaxprocs(cpu)...)
	cmd.Stdin = bytes.NewReader(input)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := runUntilDone(ctx, cmd); err != nil {
		return fmt.Errorf("bench %s: %w: %s", kind, err, stderr.String())
	}
	return json.Unmarshal(stdout.Bytes(), result)
}

// runUntilDone runs cmd to its end, or kills it once ctx ends: an interrupted
// run stops within its current child, not after every load still to come
// (ctx's error is returned then).
func runUntilDone(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	err := cmd.Wait()
	if !stop() && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// cpuModel is the "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if name, value, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown"
}

// helpText is `bin/latchkey <command> -h`: the flags this build has, with their defaults.
func helpText(command string) string {
	out, _ := exec.Command(repoPath("bin", "latchkey"), command, "-h").CombinedOutput()
	return string(out)
}

// hasFlag reports whether this build's command has the flag name.
func hasFlag(command, name string) bool {
	return regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `(\s|$)`).MatchString(helpText(command))
}

// managerFlag is the value the manager runs with for flag name: from args (the
// benchmark's -manager-args) when given there, else its default from the help text.
func managerFlag(name string, args []string) (string, error) {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, nil
		}
		if a == name && i+1 < len(args) {
			return args[i+1], nil
		}
	}
	// Go's flag help: "  -name type\n    \tdescription (default value)".
	m := regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `\b.*\n\s+.*\(default "?([^")]*)"?\)$`).FindStringSubmatch(helpText("manager"))
	if m == nil {
		return "", fmt.Errorf("no default for the manager's --%s in `latchkey manager -h`", name)
	}
	return m[1], nil
}
