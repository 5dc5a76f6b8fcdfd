"""Work beside the requests: retrain jobs, the scheduler that starts them, and retention."""
