"""Lightning DataModules over the core's in-memory loaders: the collective task stream, target tasks,
meta-training episodes."""
