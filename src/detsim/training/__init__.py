"""What training needs around Lightning: fault tolerance and preemption callbacks (`faults`), the Optuna
sweeper's objective (`sweeper`)."""
