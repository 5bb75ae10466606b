"""Data sources, class splits, task streams, target tasks, batch augmentation and Lightning DataModules."""
