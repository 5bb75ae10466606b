"""The learngene criterion: per-layer statistics gathered while the collective model learns (a registry of
named statistics), their per-task records, and the rule that picks the window of blocks to inherit."""
