package maildir_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// killerMessage is what the victim delivers: trace headers and a 20 MiB
// body whose bytes depend on their position, so a truncated or shifted file
// cannot pass for the real one.
func killerMessage() []byte {
	const size, blockSize = 20 << 20, 64 << 10
	block := make([]byte, blockSize)
	for i := range block {
		block[i] = byte(i ^ i>>8) // every byte value, CR, LF and NUL included
	}
	msg := make([]byte, 0, size)
	msg = append(msg, "Return-Path: <k@x>\nDelivered-To: k@y\n\n"...)
	for n := uint64(0); len(msg) < size; n++ {
		// Number every block so that a shifted or repeated block shows.
		msg = binary.BigEndian.AppendUint64(msg, n)
		msg = append(msg, block[:min(blockSize, size-len(msg))]...)
	}
	return msg
}

// buildKiller compiles testdata/killer (without -race: its runtime takes a
// second to start) and returns the binary's path.
func buildKiller(t *testing.T) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go tool to build testdata/killer: %v", err)
		}
	}
	exe := filepath.Join(t.TempDir(), "killer")
	cmd := exec.Command(goTool, "build", "-o", exe, "./testdata/killer")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./testdata/killer: %v\n%s", err, out)
	}
	return exe
}

// TestSIGKILLNeverPartial kills a process in the middle of Deliver at random
// moments and checks that new/ only ever holds complete messages. Orphans in
// tmp/ are expected (and counted, to show that kills did land mid-write).
func TestSIGKILLNeverPartial(t *testing.T) {
	t.Parallel()
	exe := buildKiller(t)
	base := t.TempDir()
	want := killerMessage()
	msgFile := filepath.Join(base, "message")
	if err := os.WriteFile(msgFile, want, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "Maildir")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	const rounds = 30
	var complete, orphans int
	for round := range rounds {
		cmd := exec.Command(exe, dir, msgFile)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: victim did not start: %q, %v; stderr %s", round, line, err, stderr.Bytes())
		}
		// Every fifth round, let one delivery complete first (a loaded
		// machine may need longer than the random window for one), so
		// kills also land between and after complete deliveries.
		if round%5 == 4 {
			deadline := time.Now().Add(30 * time.Second)
			for len(entries(t, filepath.Join(dir, "new"))) == 0 {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("round %d: no delivery completed in 30s; stderr %s", round, stderr.Bytes())
				}
				time.Sleep(time.Millisecond)
			}
		}
		// Anywhere from before the first file is open to a few deliveries in.
		time.Sleep(time.Duration(rng.IntN(120_000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("round %d: kill: %v", round, err)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: victim ended with %v, not by SIGKILL; stderr %s", round, err, stderr.Bytes())
		}

		for _, name := range entries(t, filepath.Join(dir, "new")) {
			p := filepath.Join(dir, "new", name)
			if err := sameContent(p, want); err != nil {
				t.Errorf("round %d: new/%s: %v", round, name, err)
			}
			complete++
			os.Remove(p) // keep disk use bounded
		}
		for _, name := range entries(t, filepath.Join(dir, "tmp")) {
			orphans++
			os.Remove(filepath.Join(dir, "tmp", name))
		}
	}
	t.Logf("%d kills: %d complete messages in new/, %d orphans in tmp/", rounds, complete, orphans)
	if complete == 0 {
		t.Errorf("no delivery completed in %d rounds: the test proved nothing", rounds)
	}
	if orphans == 0 {
		t.Errorf("no kill landed during a write (no orphan in tmp/): the test proved nothing")
	}
}

// sameContent reports how the file at p differs from the concatenation of
// want. It maps the file instead of reading it: fresh buffers of tens of
// MiB are slow on small VMs (a page fault each 4 KiB).
func sameContent(p string, want ...[]byte) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := 0
	for _, w := range want {
		size += len(w)
	}
	if st.Size() != int64(size) {
		return fmt.Errorf("partial: %d bytes, want %d", st.Size(), size)
	}
	if size == 0 {
		return nil
	}
	got, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		return err
	}
	defer syscall.Munmap(got)
	off := 0
	for i, w := range want {
		if !bytes.Equal(got[off:off+len(w)], w) {
			return fmt.Errorf("content differs in part %d (bytes %d to %d)", i, off, off+len(w))
		}
		off += len(w)
	}
	return nil
}
