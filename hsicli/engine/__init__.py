"""Engine: training, inference and evaluation."""
