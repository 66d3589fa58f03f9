"""The test/metric side and the gate: score every candidate on the test split, pick the best,
judge it against thresholds and the champion, and report why."""
