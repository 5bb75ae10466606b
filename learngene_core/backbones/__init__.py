"""Networks the suite grows and inherits from: each backbone in its own module, all behind one interface."""
