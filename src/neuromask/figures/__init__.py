"""Plotting: masks over the GM template, QC examples, sanity checks, study figures.

Every figure is written as PNG, atomically, with a non-interactive backend. Jobs and the
report draw through this package; it reads no study folder itself."""
