// Package policy checks the least privilege of the deployed stack: its test transforms
// template.yaml with the SAM translator exactly as the stand-in does (transform.py reuses
// localstack/standin/deploy.py) and asserts over every IAM policy the stack creates.
package policy
