"""Data sources, class splits, task streams, target tasks, batch augmentation and in-memory loaders (no Lightning)."""
