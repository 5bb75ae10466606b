"""LightningModules: thin wrappers that train the plain-torch networks of learngene.core."""
