"""Inference engines behind small interfaces; import a concrete engine module only where it runs."""
