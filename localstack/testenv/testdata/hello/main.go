// Command hello is what testenv's tests build with Binary: it proves the
// build works and that the environment reaches the subprocess.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("hello", os.Getenv("AWS_ENDPOINT_URL"))
}
