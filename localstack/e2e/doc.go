// Package e2e holds Tandem's end-to-end tests: real PostgreSQL, the real DynamoDB API of
// the local stand-in (moto), the real snapshot copier and streamer, and the interleavings,
// random workloads and crashes that the consistency contract (README "The contract") must survive.
package e2e
