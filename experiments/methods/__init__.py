"""Stage-3 methods: the learngene individual model and every baseline, on the same target tasks."""
