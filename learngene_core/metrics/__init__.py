"""Continual-learning, open-world and few-shot statistics."""
