"""The model: the network (cell, layers, heads for points or distributions, carried state,
one step at a time) and its checkpoint, saved atomically and loaded without running code.
It knows the data layer only."""
