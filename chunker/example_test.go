package chunker_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/cairnbackup/cairn/chunker"
)

func Example() {
	p := chunker.Params{Min: 64, Avg: 256, Max: 1024}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	var seed [32]byte // a repository's seed is random and secret
	t := chunker.NewTable(seed)

	data := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog. "), 100)
	c := chunker.New(bytes.NewReader(data), p, t)
	buf := make([]byte, 0, p.Max)
	n, total := 0, 0
	for {
		chunk, err := c.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		n++
		total += len(chunk)
	}
	fmt.Println(total == len(data), n > 1)
	// Output: true true
}
