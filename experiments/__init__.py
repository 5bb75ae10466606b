"""The stage pipeline (collective -> learngene -> individual -> report), its stage-3 methods, configs and sweeps."""
