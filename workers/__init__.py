"""Tasks, the trial trainer and Ray Tune execution."""
