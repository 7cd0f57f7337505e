// Command status reports per-table snapshot progress and the streamer's lag
// (pipeline.Status); run it with no event, or deploy it as a Lambda.
package main

import "tandem/shared/pipeline"

func main() { pipeline.Main("status", (*pipeline.Env).Status) }
