// Command snapshot copies chunks of one table until it is done or the Lambda deadline
// nears (input and output: pipeline.Snapshot).
package main

import "tandem/shared/pipeline"

func main() { pipeline.Main("snapshot", (*pipeline.Env).Snapshot) }
