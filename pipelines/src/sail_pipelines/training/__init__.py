"""The training side: the seeded split and one signed bundle per candidate, fitted on the
training split only."""
