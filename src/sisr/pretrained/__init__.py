"""Weight files of the bundled default networks (see sisr.weights.bundled)."""
