"""Sessions: their seq rules and steps, locks, stored replies, and the planner that batches appends."""
