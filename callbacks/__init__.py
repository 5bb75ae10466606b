"""Lightning callbacks: the criterion's statistics, gathered while the collective model trains."""
