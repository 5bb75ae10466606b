"""Small helpers shared by every layer: atomic file writes, seeding, process groups, non-finite loss checks."""
