"""The worker daemon: consumes runs, executes job types and reports their outcome."""
