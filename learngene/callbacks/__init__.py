"""Lightning callbacks: the gradient statistics of the criterion."""
