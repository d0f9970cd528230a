package message

import (
	"errors"
	"io"
	"syscall"
)

// MaxSize is the largest message Read accepts: far above any Postfix
// message_size_limit the appliance sets.
const MaxSize = 4 << 30

// ErrTooBig means the message exceeded MaxSize.
var ErrTooBig = errors.New("message larger than the agent accepts")

// Read reads a whole message. It reserves address space for MaxSize bytes
// in one anonymous private mapping, so memory is used only as pages are
// written: a 50 MiB message costs about 50 MiB, where a growing slice would
// hold two copies while it grows. Where the mapping fails, it falls back to
// io.ReadAll.
func Read(r io.Reader) ([]byte, error) {
	buf, err := syscall.Mmap(-1, 0, MaxSize, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return io.ReadAll(r)
	}
	n := 0
	for {
		if n == len(buf) {
			var one [1]byte
			if k, _ := io.ReadFull(r, one[:]); k > 0 {
				return nil, ErrTooBig
			}
			break
		}
		k, err := r.Read(buf[n:])
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	// The mapping lives as long as the process (one message per run).
	return buf[:n:n], nil
}
