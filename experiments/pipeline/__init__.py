"""The stage pipeline: collective -> learngene -> individual -> report (composed by experiments/run.py)."""

STAGES = ("collective", "learngene", "individual", "report")
