"""Training: the data prepared for a run, the batch sources, the loop, the run's state and
its checkpoint (exact resume), the report, and data-parallel training across processes."""
