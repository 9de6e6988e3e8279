"""VariReal: measure whether the feasibility of synthetic training images matters for CLIP classifiers."""
